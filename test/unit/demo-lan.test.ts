import { type NetworkInterfaceInfo, networkInterfaces } from 'node:os';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.ts';
import { demoConfig } from '../../src/demo/launch.ts';
import { chooseDemoAddress } from '../../src/demo/lan.ts';
import { capturingLogger } from '../helpers/log.ts';

function v4(address: string, internal = false): NetworkInterfaceInfo {
  return {
    address,
    netmask: '255.255.255.0',
    family: 'IPv4',
    mac: '00:00:00:00:00:00',
    internal,
    cidr: null,
  };
}
function v6(address: string): NetworkInterfaceInfo {
  return {
    address,
    netmask: 'ffff::',
    family: 'IPv6',
    mac: '00:00:00:00:00:00',
    internal: false,
    cidr: null,
    scopeid: 0,
  };
}
const on = { publicUrl: undefined, lan: true, httpPort: 8080 };
const lo = { lo: [v4('127.0.0.1', true)] };

describe('chooseDemoAddress', () => {
  it('picks the first private IPv4 address, even after a public one', () => {
    const a = chooseDemoAddress(
      {
        ...lo,
        eth0: [v6('2001:db8::2'), v4('203.0.113.7')],
        wlan0: [v4('192.168.1.23')],
        eth1: [v4('10.0.0.5')],
      },
      on,
    );
    expect(a).toMatchObject({ host: '192.168.1.23', lan: true });
    expect(a.reason).toContain('private');
    expect(a.reason).toContain('wlan0');
  });

  it('knows the edges of 172.16/12', () => {
    expect(chooseDemoAddress({ a: [v4('172.32.0.1')], b: [v4('172.31.9.9')] }, on).host).toBe('172.31.9.9');
    expect(chooseDemoAddress({ a: [v4('172.15.0.1')], b: [v4('172.16.0.1')] }, on).host).toBe('172.16.0.1');
  });

  it('takes a non-private address when there is no private one, and says so', () => {
    const a = chooseDemoAddress({ ...lo, eth0: [v4('192.0.2.2')] }, on);
    expect(a).toMatchObject({ host: '192.0.2.2', lan: true });
    expect(a.reason).toContain('no private one');
  });

  it('skips loopback, IPv6 and link-local; with nothing left it stays on localhost and says why', () => {
    const a = chooseDemoAddress({ ...lo, eth0: [v4('169.254.3.4'), v6('fe80::1')], dead: undefined }, on);
    expect(a).toEqual({
      host: 'localhost',
      lan: false,
      reason: 'no network address besides loopback was found',
    });
  });

  it('DEVICEGATE_PUBLIC_URL wins, and DEVICEGATE_DEMO_LAN=false keeps localhost', () => {
    const ifs = { eth0: [v4('192.168.1.23')] };
    expect(chooseDemoAddress(ifs, { ...on, publicUrl: 'https://gw.example' })).toEqual({
      host: 'gw.example',
      lan: false,
      reason: 'DEVICEGATE_PUBLIC_URL is set',
    });
    expect(chooseDemoAddress(ifs, { ...on, lan: false })).toMatchObject({
      lan: false,
      reason: 'DEVICEGATE_DEMO_LAN=false',
    });
  });
  it('stays on localhost with DEVICEGATE_HTTP_PORT=0, whose URL is only known once bound', () => {
    expect(chooseDemoAddress({ eth0: [v4('192.168.1.23')] }, { ...on, httpPort: 0 })).toEqual({
      host: 'localhost',
      lan: false,
      reason: 'DEVICEGATE_HTTP_PORT=0: a LAN URL needs the port before it is bound',
    });
  });
});

describe('demoConfig', () => {
  it('DEVICEGATE_DEMO_LAN=false leaves the config on localhost and logs why', () => {
    const config = loadConfig({ DEVICEGATE_DEMO_LAN: 'false' });
    const lines: string[] = [];
    const out = demoConfig(config, capturingLogger(lines));
    expect(out.config).toBe(config);
    expect(out.address.host).toBe('localhost');
    expect(lines.join('')).toContain('demo address localhost: DEVICEGATE_DEMO_LAN=false');
  });

  it("binds and advertises this machine's LAN address when it has one, else stays as configured", () => {
    const config = loadConfig({});
    const expected = chooseDemoAddress(networkInterfaces(), on);
    const out = demoConfig(config, capturingLogger([]));
    expect(out.address).toEqual(expected);
    if (expected.lan) {
      expect(out.config.publicUrl).toBe(`http://${expected.host}:8080`);
      expect(out.config.http.host).toBe(expected.host);
      expect(out.config.mqtt).toMatchObject({ kind: 'embedded', host: expected.host });
    } else {
      expect(out.config).toBe(config);
    }
  });
});
