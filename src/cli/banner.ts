/** What `npm start` prints: where everything listens and how to try it. */
import type { Gateway } from '../gateway.ts';

export function banner(g: Gateway): string {
  const lines = [
    '',
    '  devicegate is running',
    '',
    `  devices (MQTT)     ${g.mqttUrl}   topics ${g.config.topicPrefix}/{deviceId}/req/+ and /res`,
    `  web                ${g.publicUrl}/device   (health ${g.httpUrl}/healthz, ${g.httpUrl}/readyz, ${g.httpUrl}/metrics)`,
    `  upstream           ${g.upstreamIssuer}   (${g.config.mode === 'device' ? 'relay: RFC 8628 device endpoint' : 'bridge: authorization code + PKCE'})`,
  ];
  if (g.demo !== undefined) {
    lines.push(
      '',
      '  ************************************************************************',
      '  *  DEMO MODE - a built-in identity provider with a demo user.           *',
      '  *  Not for production: set DEVICEGATE_UPSTREAM_ISSUER to a real one.     *',
      '  ************************************************************************',
      '',
      `  demo user          ${g.demo.username} / ${g.demo.password}`,
      '',
      '  Try it: in a second terminal run',
      '',
      '      npm run sim -- --id tv-1',
      '',
      '  then open the URL it prints, enter the code, and sign in as the demo user.',
    );
  }
  lines.push('');
  return `${lines.join('\n')}\n`;
}
