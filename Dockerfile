# The berth image: server, agent and flow-run process in one.
#
# From a clone: `docker compose up --build`, or `docker build .`. The build stage installs every dependency,
# compiles berth and prunes to production dependencies; the final stage takes only those and dist/.
# Where Docker Hub cannot be reached, `berth image build-base` and `berth image base` make the two base images
# from this host (pass them as BUILD_IMAGE and BASE_IMAGE).
#
# `berth image build` (images/berth-image.ts) builds the final stage alone, from an installed berth's dist/ and
# production node_modules: it derives a single-stage Dockerfile from this one by turning each
# `COPY --from=build <build WORKDIR>/<path>` into `COPY <path>`. The final stage is the one place the image's
# layout is written down.
ARG BUILD_IMAGE=node:20-bookworm
ARG BASE_IMAGE=node:20-bookworm-slim

FROM ${BUILD_IMAGE} AS build
# better-sqlite3 compiles from source when its prebuilt binary cannot be downloaded: node-gyp then needs
# python3, make and g++ (in the full node image) and Node's headers, taken from the image rather than downloaded.
ENV npm_config_nodedir=/usr/local
WORKDIR /build
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
# What else the build reads is what .dockerignore lets through.
COPY . ./
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

FROM ${BASE_IMAGE}
# berth lives at /opt/berth/node_modules/berth so that flow bundles placed in /opt/berth/flows resolve
# `import "berth"` (and berth's own dependencies) the way Node always does, by walking up to node_modules.

ENV NODE_ENV=production
WORKDIR /opt/berth

# Dependencies change less often than berth itself: their layer comes first so that it is reused.
COPY package.json /opt/berth/node_modules/berth/package.json
COPY --from=build /build/node_modules/ /opt/berth/node_modules/berth/node_modules/
COPY --from=build /build/dist/ /opt/berth/node_modules/berth/dist/

# The flows directory gets its own package.json so that `npm install` run there (DockerStorage dependencies)
# installs into /opt/berth/flows/node_modules instead of adopting /opt/berth and pruning berth as extraneous.
RUN chmod 755 /opt/berth/node_modules/berth/dist/cli/main.js \
 && ln -s /opt/berth/node_modules/berth/dist/cli/main.js /usr/local/bin/berth \
 && mkdir -p /opt/berth/flows \
 && echo '{ "name": "berth-flows", "private": true }' > /opt/berth/flows/package.json

EXPOSE 4200
CMD ["berth", "--help"]
