# The layercache worker image. The CPU onnxruntime ships inside the npm
# package; .npmrc keeps its install step from downloading GPU files.
FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production ONNXRUNTIME_NODE_INSTALL=skip
COPY package.json package-lock.json .npmrc ./
RUN npm ci --omit=dev && npm cache clean --force
COPY bin ./bin
COPY src ./src
COPY schemas ./schemas
# The backbone the worker loads, and the test split `layercache produce` sends by default.
COPY models ./models
COPY data ./data
COPY tsconfig.json ./
USER node
ENTRYPOINT ["node", "--single-threaded-gc", "bin/layercache.js"]
CMD ["worker"]
