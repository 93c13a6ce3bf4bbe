# devicegate gateway image. Build: docker build -t devicegate .
# Node 24: the maintained LTS (Node 20 reached its end of life in April 2026); CI runs the suite on 24 as well.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY firmware-sim ./firmware-sim
RUN npm run build && npm prune --omit=dev

FROM node:24-bookworm-slim
# With the embedded broker, production refuses this plain listener on 0.0.0.0 at start and says what to do: serve
# devices over TLS (DEVICEGATE_MQTT_TLS_CERT/_KEY, DEVICEGATE_MQTT_TLS_HOST=0.0.0.0, DEVICEGATE_MQTT_HOST=127.0.0.1)
# or set DEVICEGATE_MQTT_ALLOW_PLAINTEXT=true behind a TLS-terminating load balancer. An external broker is unaffected.
ENV NODE_ENV=production \
    DEVICEGATE_HTTP_HOST=0.0.0.0 \
    DEVICEGATE_MQTT_HOST=0.0.0.0
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/src/store/redis/lua ./dist/src/store/redis/lua
COPY package.json ./
COPY bin ./bin
USER node
EXPOSE 8080 1883 8883
HEALTHCHECK --interval=10s --timeout=3s CMD node -e "fetch('http://127.0.0.1:'+(process.env.DEVICEGATE_HTTP_PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
STOPSIGNAL SIGTERM
CMD ["node", "bin/devicegate.mjs"]
