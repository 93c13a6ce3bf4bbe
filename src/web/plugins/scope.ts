/**
 * Fastify encapsulates what a plugin registers inside the plugin's own context. The pages' plugins must instead act
 * on the scope that registers them (their hooks and parsers cover that scope's routes), which fastify allows through
 * the `skip-override` property (the mechanism `fastify-plugin` sets; fastify's "Plugins" reference).
 */
import type { FastifyPluginAsync, FastifyPluginOptions } from 'fastify';

/** `plugin`, marked to register into the scope that registers it, under `name` in fastify's plugin tree. */
export function inScope<O extends FastifyPluginOptions>(
  name: string,
  plugin: FastifyPluginAsync<O>,
): FastifyPluginAsync<O> {
  return Object.assign(plugin, {
    [Symbol.for('skip-override')]: true,
    [Symbol.for('fastify.display-name')]: name,
  });
}
