// Computes the UnixFS test vectors of protocol/src/unixfs.rs with an independent
// implementation. Run: npm install ipfs-unixfs-importer blockstore-core && node unixfs-vectors.mjs
import { importer } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'
import { MemoryBlockstore } from 'blockstore-core/memory'

const opts = {
  cidVersion: 1, rawLeaves: true, reduceSingleLeafToSelf: true,
  chunker: fixedSize({ chunkSize: 262144 }),
  layout: balanced({ maxChildrenPerNode: 174 }),
  wrapWithDirectory: false,
}
const pattern = (n, seed) => { const b = new Uint8Array(n); for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) % 251; return b }
async function cidOf(entries) {
  const bs = new MemoryBlockstore()
  let last
  for await (const e of importer(entries, bs, opts)) last = e
  return last.cid.toString()
}
const K = 262144
for (const [name, n] of [['empty', 0], ['hello', -1], ['chunk+1', K + 1], ['1MiB', 1 << 20], ['174chunks+1', 174 * K + 1]]) {
  const content = n < 0 ? new TextEncoder().encode('hello world\n') : pattern(n, 7)
  console.log(name, await cidOf([{ content }]))
}
// nested directory
const dir = [
  { path: 'root/a.txt', content: new TextEncoder().encode('alpha\n') },
  { path: 'root/b/c.bin', content: pattern(300000, 3) },
  { path: 'root/b/d/e.txt', content: new TextEncoder().encode('') },
  { path: 'root/Z.txt', content: new TextEncoder().encode('zulu') },
]
const bs = new MemoryBlockstore()
const out = []
for await (const e of importer(dir, bs, opts)) out.push([e.path, e.cid.toString()])
for (const [p, c] of out) console.log('dir', p, c)
