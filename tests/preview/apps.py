"""The three kinds of app the preview tests deploy, as project files."""

from __future__ import annotations

STATIC_SITE = {
    "index.html": "<!doctype html><title>static</title><h1>hello static v1</h1>",
    "css/site.css": "h1 { color: teal; }",
}

NODE_SERVER = r"""
const http = require('http');
const net = require('net');
const fs = require('fs');
const os = require('os');
const version = 'hello node v1';
http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  if (url.pathname === '/stream') {
    let n = 0;
    res.writeHead(200, {'content-type': 'text/plain'});
    const timer = setInterval(() => {
      res.write(`chunk ${n}\n`);
      if (++n === 3) { clearInterval(timer); res.end(); }
    }, 150);
    return;
  }
  if (url.pathname === '/echo') {
    const parts = [];
    req.on('data', (c) => parts.push(c));
    req.on('end', () => res.end(Buffer.concat(parts)));
    return;
  }
  if (url.pathname === '/probe') {
    const socket = net.connect({host: url.searchParams.get('host'),
                                port: Number(url.searchParams.get('port'))});
    socket.setTimeout(2000);
    socket.on('connect', () => { socket.destroy(); res.end('open'); });
    socket.on('timeout', () => { socket.destroy(); res.end('timeout'); });
    socket.on('error', (e) => res.end('error ' + e.code));
    return;
  }
  if (url.pathname === '/exists') {
    return res.end(String(fs.existsSync(url.searchParams.get('path'))));
  }
  if (url.pathname === '/interfaces') {
    return res.end(Object.keys(os.networkInterfaces()).join(','));
  }
  if (url.pathname === '/headers') {
    res.setHeader('content-type', 'application/json');
    return res.end(JSON.stringify(req.headers));
  }
  res.end(version);
}).listen(Number(process.env.PORT), '127.0.0.1');
"""

NODE_APP = {
    "package.json": '{"name": "demo", "scripts": {"start": "node server.js"}}',
    "server.js": NODE_SERVER,
}

PYTHON_APP = {
    "requirements.txt": "starlette\nuvicorn\nwebsockets\n",
    "app.py": '''
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute


async def home(request):
    return PlainTextResponse("hello python v1")


async def echo(websocket):
    await websocket.accept()
    async for text in websocket.iter_text():
        await websocket.send_text("echo: " + text)


app = Starlette(routes=[Route("/", home), WebSocketRoute("/ws", echo)])
''',
}
