/** Every sentence the pages show, in German (formal address). The keys are English's: see ./en.ts. */
import type { Catalogue } from './en.ts';

export const de: Catalogue = {
  lang: 'de',
  brand: 'devicegate',

  // Shared
  signInAt: (host: string) => `Sie melden sich bei ${host} an.`,
  startAgain: 'Code eingeben',
  footer:
    'devicegate verbindet Geräte mit Ihrem Konto. Geben Sie nie einen Code ein, den Ihnen jemand geschickt hat.',
  justNow: 'gerade eben',

  // Entry page (GET /device)
  entryTitle: 'Gerät verbinden',
  entryIntro: 'Geben Sie den Code ein, den Ihr Gerät anzeigt.',
  codeLabel: 'Code',
  codeHint: 'Acht Buchstaben, zum Beispiel BCDF-GHJK. Bindestriche und Leerzeichen sind egal.',
  continue: 'Weiter',
  invalidCode:
    'Dieser Code ist ungültig. Prüfen Sie den Code auf Ihrem Gerät und versuchen Sie es noch einmal.',

  // Confirm page (POST /device, or the device's scanned link)
  confirmTitle: 'Ist das Ihr Gerät?',
  confirmCodeLabel: 'Code',
  confirmCodeHint: 'Dieser Code muss mit dem auf dem Bildschirm Ihres Geräts übereinstimmen.',
  deviceHeading: 'Das Gerät',
  deviceReported: 'Was das Gerät über sich selbst sagt (nicht überprüft):',
  fieldDeviceId: 'Geräte-ID',
  fieldName: 'Name',
  fieldModel: 'Modell',
  fieldFirmware: 'Firmware',
  fieldRequested: 'Angefragt',
  fieldExpires: 'Code läuft ab',
  fieldNetwork: 'Angefragt von',
  networkAddress: (address: string) => `der Netzwerkadresse ${address}`,
  networkHint: 'Von hier kam die Anfrage des Geräts: meist die Internetverbindung, an der es hängt.',
  notReported: 'nicht angegeben',
  unknownNetwork: 'unbekannt',
  scopesHeading: 'Wenn Sie zustimmen, darf es:',
  scopes: {
    openid: 'wissen, welches Konto Sie sind (Ihre Kontokennung).',
    profile: 'Ihr Basisprofil sehen: Ihren Namen und Ihr Bild.',
    email: 'Ihre E-Mail-Adresse sehen.',
    offline_access: 'seinen Zugriff behalten, wenn Sie nicht da sind, bis Sie ihn widerrufen.',
  },
  unknownScope: 'diese Berechtigung nutzen: ',
  warning: 'Fahren Sie nur fort, wenn dieses Gerät vor Ihnen steht.',
  warningDetail:
    'Wenn Ihnen jemand diesen Code geschickt oder Sie gebeten hat, ihn einzugeben, wählen Sie Ablehnen.',
  approve: 'Zustimmen',
  deny: 'Ablehnen',

  // Outcome pages (GET /device/done)
  doneAuthorizedTitle: 'Gerät verbunden',
  doneAuthorized: 'Ihr Gerät ist verbunden; Sie können diese Seite schließen.',
  doneDeniedTitle: 'Anfrage abgelehnt',
  doneDenied: 'Sie haben die Anfrage abgelehnt. Das Gerät wurde informiert und hat keinen Zugriff erhalten.',
  doneExpiredTitle: 'Die Anfrage ist abgelaufen',
  doneExpired:
    'Die Anfrage ist abgelaufen; starten Sie auf Ihrem Gerät neu, um einen neuen Code zu erhalten.',
  doneFailedTitle: 'Anmeldung nicht abgeschlossen',
  doneFailed:
    'Die Anmeldung wurde nicht abgeschlossen, und das Gerät hat keinen Zugriff erhalten. Starten Sie auf Ihrem Gerät neu.',
  doneFailedBecause: {
    invalid_scope:
      'Der Identitätsanbieter erlaubt nicht, was das Gerät angefragt hat, daher hat das Gerät keinen Zugriff erhalten.',
    unauthorized_client:
      'Der Identitätsanbieter akzeptiert dieses Gateway nicht als Client, daher hat das Gerät keinen Zugriff erhalten. Wenden Sie sich an den Betreiber des Gateways.',
    expired_token:
      'Die Anmeldung hat zu lange gedauert oder wurde schon verwendet. Starten Sie auf Ihrem Gerät neu.',
    invalid_request:
      'Die Antwort des Identitätsanbieters gehörte nicht zu dieser Anmeldung und wurde nicht verwendet. Starten Sie auf Ihrem Gerät neu.',
    server_error:
      'Der Identitätsanbieter hat die Anmeldung abgelehnt oder war nicht erreichbar, und das Gerät hat keinen Zugriff erhalten. Starten Sie in einer Minute auf Ihrem Gerät neu.',
  },
  doneCappedTitle: 'Zu viele Geräte zugelassen',
  doneCapped:
    'Sie haben in der letzten Stunde zu vielen Geräten zugestimmt, daher hat dieses Gerät keinen Zugriff erhalten. Warten Sie eine Stunde und starten Sie auf Ihrem Gerät neu.',

  // Error pages
  csrfTitle: 'Dieses Formular ist abgelaufen',
  csrf: 'Das Formular konnte nicht angenommen werden. Es war vielleicht zu lange geöffnet oder kam nicht von dieser Seite. Beginnen Sie von vorn.',
  callbackInvalidTitle: 'Dieser Anmeldelink ist nicht mehr gültig',
  callbackInvalid:
    'Dieser Anmeldelink ist nicht mehr gültig. Er wurde vielleicht schon verwendet oder in einem anderen Browser geöffnet als dem, in dem Sie dem Gerät zugestimmt haben. Starten Sie auf Ihrem Gerät neu.',
  tooManyTitle: 'Zu viele Versuche',
  tooMany: (seconds: number) =>
    `Es wurden zu viele Codes ausprobiert. Warten Sie ${seconds < 60 ? `${seconds} Sekunden` : `${Math.ceil(seconds / 60)} Minuten`} und versuchen Sie es noch einmal.`,
  badRequestTitle: 'Mit der Anfrage stimmt etwas nicht',
  badRequest: 'Die Seite konnte nicht verstehen, was gesendet wurde. Beginnen Sie von vorn.',
  notFoundTitle: 'Seite nicht gefunden',
  notFound: 'Unter dieser Adresse gibt es nichts. Prüfen Sie den Link, dem Sie gefolgt sind.',
  unavailableTitle: 'Vorübergehend nicht verfügbar',
  unavailable:
    'Der Dienst ist ausgelastet oder ein Teil davon ist ausgefallen. Versuchen Sie es gleich noch einmal.',
  serverErrorTitle: 'Etwas ist schiefgelaufen',
  serverError: 'Bei uns ist etwas schiefgelaufen. Versuchen Sie es noch einmal.',
};
