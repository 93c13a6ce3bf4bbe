/**
 * docs/asyncapi.yaml: what scripts/asyncapi.ts builds from the zod schemas (kept in step like the README's tables),
 * and a valid AsyncAPI 3 document by @asyncapi/parser, describing every action, reply and error code.
 */
import { readFileSync } from 'node:fs';
import { Parser } from '@asyncapi/parser';
import { describe, expect, it } from 'vitest';
import { OAUTH_ERROR_CODES } from '../../src/core/errors.ts';
import { DEVICE_ACTIONS } from '../../src/core/protocol.ts';
import { asyncApiYaml } from '../../scripts/asyncapi/document.ts';

const committed = readFileSync(new URL('../../docs/asyncapi.yaml', import.meta.url), 'utf8');

describe('docs/asyncapi.yaml', () => {
  it('is what `npm run asyncapi` generates from the zod schemas', () => {
    expect(committed).toBe(asyncApiYaml());
  });

  it('is a valid AsyncAPI 3 document with every request, the reply topic and every error code', async () => {
    const { document, diagnostics } = await new Parser().parse(committed);
    // severity 0 is an error; warnings and hints do not make a document invalid
    expect(diagnostics.filter((d) => d.severity === 0)).toEqual([]);
    expect(document).toBeDefined();
    const addresses = document!
      .channels()
      .all()
      .map((c) => c.address());
    expect(addresses.sort()).toEqual(
      [...DEVICE_ACTIONS.map((a) => `{prefix}/{deviceId}/req/${a}`), '{prefix}/{deviceId}/res'].sort(),
    );
    const errorPayload = document!.components().messages().get('errorReply')?.payload();
    expect(errorPayload?.properties()?.error?.enum()).toEqual([...OAUTH_ERROR_CODES]);
    for (const op of document!.operations().all()) {
      expect(op.bindings().get('mqtt')?.value(), op.id()).toMatchObject({ qos: 1, retain: false });
    }
  });
});
