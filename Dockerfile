# The berth runtime image: server, agent and flow runtime in one.
#
# `ensureRuntimeImage` (docker/runtime-image.ts) builds it with a context holding only this Dockerfile,
# package.json, dist/ and the production dependency closure of node_modules/. Building it by hand from a
# checkout works too, after `npm ci --omit=dev && npm run build` (or with a .dockerignore of dev packages).
#
# berth lives at /opt/berth/node_modules/berth so that flow bundles placed in /opt/berth/flows resolve
# `import "berth"` (and berth's own dependencies) the way Node always does, by walking up to node_modules.
ARG BASE_IMAGE=node:20-bookworm-slim
FROM ${BASE_IMAGE}

ENV NODE_ENV=production
WORKDIR /opt/berth

# Dependencies change less often than berth itself: their layer comes first so that it is reused.
COPY package.json /opt/berth/node_modules/berth/package.json
COPY node_modules/ /opt/berth/node_modules/berth/node_modules/
COPY dist/ /opt/berth/node_modules/berth/dist/

# The flows directory gets its own package.json so that `npm install` run there (DockerStorage dependencies)
# installs into /opt/berth/flows/node_modules instead of adopting /opt/berth and pruning berth as extraneous.
RUN chmod 755 /opt/berth/node_modules/berth/dist/cli/main.js \
 && ln -s /opt/berth/node_modules/berth/dist/cli/main.js /usr/local/bin/berth \
 && mkdir -p /opt/berth/flows \
 && echo '{ "name": "berth-flows", "private": true }' > /opt/berth/flows/package.json

EXPOSE 4200
CMD ["berth", "--help"]
