// A real Helia node on 127.0.0.1 for phase-node's Bitswap tests.
//
//   node --import ./polyfill.mjs helia.mjs serve FILE|DIR [DIAL_MULTIADDR]
//     adds FILE (or DIR, recursively) as `ipfs add --cid-version=1` would, prints one JSON line
//     {"cid", "addrs"}, dials DIAL_MULTIADDR if given, serves until stdin
//     closes.
//   node --import ./polyfill.mjs helia.mjs fetch CID MULTIADDR OUT
//     dials MULTIADDR, fetches CID over Bitswap, writes the file to OUT,
//     prints {"bytes", "ms"}.
//   node --import ./polyfill.mjs helia.mjs garbage MULTIADDR CID OUT
//     sends garbage Bitswap frames to MULTIADDR, then fetches CID to OUT.
//   node --import ./polyfill.mjs helia.mjs flood MULTIADDR COUNT
//     sends COUNT Bitswap wants for blocks nobody has, then waits.
//   node --import ./polyfill.mjs helia.mjs liar
//     answers every Bitswap want with a wrong block; prints {"addrs"}.
//   HELIA_KEY=rsa gives the node an RSA identity instead of Ed25519.
import fs from 'node:fs'
import { createHeliaLight } from 'helia'
import { withLibp2pLight } from '@helia/libp2p'
import { withBitswap } from '@helia/bitswap'
import { unixfs } from '@helia/unixfs'
import { tcp } from '@libp2p/tcp'
import { noise } from '@libp2p/noise'
import { yamux } from '@libp2p/yamux'
import { identify } from '@libp2p/identify'
import { multiaddr } from '@multiformats/multiaddr'
import { CID } from 'multiformats/cid'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'

const [mode, ...args] = process.argv.slice(2)
// HELIA_KEY=rsa: an RSA identity, as old Kubo repos have (`Qm…` peer ids).
const privateKey = process.env.HELIA_KEY === 'rsa' ? await generateKeyPair('RSA', 2048) : undefined
const light = withLibp2pLight(createHeliaLight(), {
  privateKey,
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: { identify: identify() }
})
// A liar speaks Bitswap itself, below.
const helia = mode === 'liar' ? light : withBitswap(light)
await helia.start()
const fs2 = unixfs(helia)
// `ipfs add --cid-version=1`: 256 KiB chunks, raw leaves, 174 links per node.
// HELIA_CID_VERSION=0: Kubo's default instead (CIDv0, dag-pb leaves).
// @helia/unixfs passes its own chunker and layout (1 MiB chunks, 1024 links),
// which win over the importer's `profile`: Kubo's are given here.
// HELIA_CHUNK=N: N-byte chunks instead (Helia's own 1 MiB makes messages
// over 1 MiB, which Rust yamux once refused).
const chunkSize = Number(process.env.HELIA_CHUNK ?? 262_144)
const kubo = { chunker: fixedSize({ chunkSize }), layout: balanced({ maxChildrenPerNode: 174 }) }
const addOptions = process.env.HELIA_CID_VERSION === '0'
  ? { ...kubo, cidVersion: 0, rawLeaves: false }
  : { ...kubo, profile: 'unixfs-v0-2015', cidVersion: 1, rawLeaves: true }

// Fetches file CID over Bitswap into OUT (2 minutes at most); its length.
async function catTo (cid, out) {
  const fd = fs.openSync(out, 'w')
  let bytes = 0
  for await (const chunk of fs2.cat(CID.parse(cid), { signal: AbortSignal.timeout(120_000) })) {
    fs.writeSync(fd, chunk)
    bytes += chunk.length
  }
  fs.closeSync(fd)
  return bytes
}

// A directory's files under its own name; the CID of the directory.
async function addDirectory (dir) {
  const name = dir.replace(/\/+$/, '').split('/').pop()
  const files = []
  const walk = (abs, rel) => {
    for (const entry of fs.readdirSync(abs, { withFileTypes: true })) {
      const a = `${abs}/${entry.name}`
      const r = `${rel}/${entry.name}`
      if (entry.isDirectory()) walk(a, r)
      else files.push({ path: r, content: fs.readFileSync(a) })
    }
  }
  walk(dir, name)
  let root
  for await (const entry of fs2.addAll(files, addOptions)) {
    if (entry.path === name) root = entry.cid
  }
  return root
}

if (mode === 'serve') {
  const [file, dial] = args
  const cid = fs.statSync(file).isDirectory()
    ? await addDirectory(file)
    : await fs2.addBytes(fs.readFileSync(file), addOptions)
  if (dial) await helia.libp2p.dial(multiaddr(dial))
  const addrs = helia.libp2p.getMultiaddrs().map(String)
  process.stdout.write(JSON.stringify({ cid: cid.toString(), addrs }) + '\n')
  process.stdin.resume()
  process.stdin.on('end', async () => { await helia.stop(); process.exit(0) })
} else if (mode === 'fetch') {
  const [cid, addr, out] = args
  const started = Date.now()
  await helia.libp2p.dial(multiaddr(addr))
  const bytes = await catTo(cid, out)
  process.stdout.write(JSON.stringify({ bytes, ms: Date.now() - started }) + '\n')
  await helia.stop()
  process.exit(0)
} else if (mode === 'flood') {
  // FLOOD wants (want-block, send-dont-have) for random CIDs, 5,000 per
  // message on one stream; prints {"sent"} once written, then stays until
  // stdin closes.
  const [addr, count] = args
  const varint = (n) => { const out = []; while (n >= 0x80) { out.push((n & 0x7f) | 0x80); n = Math.floor(n / 128) } out.push(n); return out }
  const bytesField = (num, bytes) => [...varint((num << 3) | 2), ...varint(bytes.length), ...bytes]
  const ma = multiaddr(addr)
  await helia.libp2p.dial(ma)
  const stream = await helia.libp2p.dialProtocol(ma, '/ipfs/bitswap/1.2.0')
  let sent = 0
  const total = Number(count)
  while (sent < total) {
    const entries = []
    for (let i = 0; i < 5000 && sent < total; i++, sent++) {
      const cid = [0x01, 0x55, 0x12, 0x20, ...crypto.getRandomValues(new Uint8Array(32))]
      entries.push(...bytesField(1, [...bytesField(1, cid), 0x28, 0x01]))
    }
    const msg = Uint8Array.from(bytesField(1, entries))
    if (!stream.send(Uint8Array.from([...varint(msg.length), ...msg]))) await stream.onDrain()
  }
  process.stdout.write(JSON.stringify({ sent }) + '\n')
  process.stdin.resume()
  process.stdin.on('end', async () => { await helia.stop(); process.exit(0) })
} else if (mode === 'garbage') {
  // Bad Bitswap input: an oversized length prefix on one stream, a frame
  // that is not protobuf on another; then a fetch that must still work.
  const [addr, cid, out] = args
  const ma = multiaddr(addr)
  await helia.libp2p.dial(ma)
  const big = await helia.libp2p.dialProtocol(ma, '/ipfs/bitswap/1.2.0')
  big.send(Uint8Array.from([0x80, 0x80, 0x80, 0x40, 1, 2, 3]))
  await big.close().catch(() => {})
  const junk = await helia.libp2p.dialProtocol(ma, '/ipfs/bitswap/1.2.0')
  junk.send(Uint8Array.from([5, 0xff, 0xff, 0xff, 0xff, 0xff]))
  await junk.close().catch(() => {})
  const bytes = await catTo(cid, out)
  process.stdout.write(JSON.stringify({ bytes }) + '\n')
  await helia.stop()
  process.exit(0)
} else if (mode === 'liar') {
  // Answers every Bitswap want with a block that is not what was asked for
  // (random bytes under a raw CIDv1 prefix), on its own outbound stream as
  // Bitswap answers go; prints {"addrs"}, stays until stdin closes.
  const varint = (n) => { const out = []; while (n >= 0x80) { out.push((n & 0x7f) | 0x80); n = Math.floor(n / 128) } out.push(n); return out }
  const bytesField = (num, bytes) => [...varint((num << 3) | 2), ...varint(bytes.length), ...bytes]
  await helia.libp2p.handle('/ipfs/bitswap/1.2.0', async (stream, connection) => {
    for await (const _ of stream) { break } // a want arrived
    const block = bytesField(3, [...bytesField(1, [0x01, 0x55, 0x12, 0x20]), ...bytesField(2, crypto.getRandomValues(new Uint8Array(64)))])
    const msg = Uint8Array.from(block)
    const out = await helia.libp2p.dialProtocol(connection.remotePeer, '/ipfs/bitswap/1.2.0')
    out.send(Uint8Array.from([...varint(msg.length), ...msg]))
    await out.close().catch(() => {})
  })
  const addrs = helia.libp2p.getMultiaddrs().map(String)
  process.stdout.write(JSON.stringify({ addrs }) + '\n')
  process.stdin.resume()
  process.stdin.on('end', async () => { await helia.stop(); process.exit(0) })
} else {
  process.stderr.write('usage: helia.mjs serve FILE [DIAL] | fetch CID MULTIADDR OUT | garbage MULTIADDR CID OUT | flood MULTIADDR COUNT | liar\n')
  process.exit(2)
}
