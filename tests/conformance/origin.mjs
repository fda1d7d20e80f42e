// The http-cache-tests origin, on loopback only. The package's own server script listens on
// every interface at a fixed port; this one reuses its request handlers, binds 127.0.0.1
// at the port given (0 picks one) and prints "listening PORT" once it is ready.
import http from 'http'
import process from 'process'

import handleConfig from '../../node_modules/http-cache-tests/server/handle-config.mjs'
import handleFile from '../../node_modules/http-cache-tests/server/handle-file.mjs'
import handleState from '../../node_modules/http-cache-tests/server/handle-state.mjs'
import handleTest from '../../node_modules/http-cache-tests/server/handle-test.mjs'

const port = parseInt(process.argv[2] || '0')
const base = 'http://127.0.0.1/'
const handlers = { config: handleConfig, test: handleTest, state: handleState }

const server = http.createServer((request, response) => {
  const url = new URL(request.url, base)
  const segs = url.pathname.split('/')
  segs.shift()
  const handler = handlers[segs.shift()]
  if (handler) handler(segs, request, response)
  else handleFile(url, request, response)
})
server.listen(port, '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`)
})
server.on('clientError', (err, socket) => {
  console.error('clientError', err.code, JSON.stringify(String(err.rawPacket)).slice(0, 3000))
  socket.destroy()
})
