/**
 * Every sentence the pages show, in English (the default language). Other languages copy this object and translate
 * the values: {@link Catalogue} is this object's type, so a catalogue with a key missing or added does not compile,
 * and test/unit/i18n.test.ts compares the keys of the nested records too. Values are plain text (the views escape
 * them); functions take the values they mention.
 */
import type { FailureReason } from '../views/pages.ts';

export const en = {
  /** the `lang` of the page and the locale of `Intl.RelativeTimeFormat` ("2 minutes ago") */
  lang: 'en',
  brand: 'devicegate',

  // Shared
  signInAt: (host: string) => `You will sign in at ${host}.`,
  startAgain: 'Enter a code',
  footer: 'devicegate connects devices to your account. Never enter a code that someone sent you.',
  justNow: 'just now',

  // Entry page (GET /device)
  entryTitle: 'Connect a device',
  entryIntro: 'Enter the code shown on your device.',
  codeLabel: 'Code',
  codeHint: 'Eight letters, for example BCDF-GHJK. Dashes and spaces do not matter.',
  continue: 'Continue',
  invalidCode: 'That code is not valid. Check the code on your device and try again.',

  // Confirm page (POST /device, or the device's scanned link)
  confirmTitle: 'Is this your device?',
  confirmCodeLabel: 'Code',
  confirmCodeHint: 'This code must match the one on your device’s screen.',
  deviceHeading: 'The device',
  deviceReported: 'What the device says about itself (it was not checked):',
  fieldDeviceId: 'Device id',
  fieldName: 'Name',
  fieldModel: 'Model',
  fieldFirmware: 'Firmware',
  fieldRequested: 'Asked',
  fieldExpires: 'Code expires',
  fieldNetwork: 'Asked from',
  networkAddress: (address: string) => `the network address ${address}`,
  networkHint: 'This is where the device’s request came from: usually the internet connection it is on.',
  notReported: 'not reported',
  unknownNetwork: 'unknown',
  scopesHeading: 'If you approve, it will be able to:',
  scopes: {
    openid: 'Know which account you are (your account identifier).',
    profile: 'See your basic profile: your name and picture.',
    email: 'See your email address.',
    offline_access: 'Keep its access when you are not there, until you revoke it.',
  } as Readonly<Record<string, string>>,
  unknownScope: 'Use this permission: ',
  warning: 'Continue only if this device is in front of you.',
  warningDetail: 'If someone sent you this code or asked you to enter it, choose Deny.',
  approve: 'Approve',
  deny: 'Deny',

  // Outcome pages (GET /device/done)
  doneAuthorizedTitle: 'Device connected',
  doneAuthorized: 'Your device is connected; you can close this page.',
  doneDeniedTitle: 'Request denied',
  doneDenied: 'You denied the request. The device was told and got no access.',
  doneExpiredTitle: 'The request expired',
  doneExpired: 'The request expired; start again on your device to get a new code.',
  doneFailedTitle: 'Sign-in did not complete',
  doneFailed: 'The sign-in did not complete, and the device got no access. Start again on your device.',
  doneFailedBecause: {
    invalid_scope:
      'The identity provider does not allow what the device asked for, so the device got no access.',
    unauthorized_client:
      'The identity provider does not accept this gateway as a client, so the device got no access. Tell whoever runs the gateway.',
    expired_token: 'The sign-in took too long or was already used. Start again on your device.',
    invalid_request:
      "The identity provider's answer did not belong to this sign-in, so it was not used. Start again on your device.",
    server_error:
      'The identity provider refused the sign-in or could not be reached, and the device got no access. Start again on your device in a minute.',
  } satisfies Record<FailureReason, string>,
  doneCappedTitle: 'Too many devices approved',
  doneCapped:
    'You have approved too many devices in the last hour, so this device got no access. Wait an hour and start again on your device.',

  // Error pages
  csrfTitle: 'This form has expired',
  csrf: 'The form could not be accepted. It may have been open too long, or it did not come from this site. Start again.',
  callbackInvalidTitle: 'This sign-in link is no longer valid',
  callbackInvalid:
    'This sign-in link is no longer valid. It may have been used already, or opened in another browser than the one you approved the device in. Start again on your device.',
  tooManyTitle: 'Too many attempts',
  tooMany: (seconds: number) =>
    `Too many codes were tried. Wait ${seconds < 60 ? `${seconds} seconds` : `${Math.ceil(seconds / 60)} minutes`} and try again.`,
  badRequestTitle: 'Something is wrong with the request',
  badRequest: 'The page could not understand what was sent. Start again.',
  notFoundTitle: 'Page not found',
  notFound: 'There is nothing at this address. Check the link you followed.',
  unavailableTitle: 'Temporarily unavailable',
  unavailable: 'The service is busy or a part of it is down. Try again in a moment.',
  serverErrorTitle: 'Something went wrong',
  serverError: 'Something went wrong on our side. Try again.',
};

/** The shape every language's catalogue has: the same keys, the same functions. */
export type Catalogue = typeof en;
