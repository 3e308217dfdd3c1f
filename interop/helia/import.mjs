// Helia's UnixFS importer (ipfs-unixfs-importer, as @helia/unixfs uses it)
// with Kubo's settings, for comparing root CIDs with `phase-node add -r`.
//
//   node --import ./polyfill.mjs import.mjs DIR
//     imports DIR (its files, recursively, under DIR's own name) into a
//     blockstore that keeps nothing, prints one JSON line {"cid", "entries"}.
//   SHARD_THRESHOLD=N overrides the sharding threshold (262144 bytes).
import fs from 'node:fs'
import { importer } from 'ipfs-unixfs-importer'
import { BlackHoleBlockstore } from 'blockstore-core/black-hole'

const [dir] = process.argv.slice(2)
const name = dir.replace(/\/+$/, '').split('/').pop()
// `ipfs add --cid-version=1`: 256 KiB chunks, raw leaves, 174 links per
// node, directories sharded once their links pass 256 KiB (estimated as
// Kubo does: name plus CID bytes per link).
const options = {
  profile: 'unixfs-v0-2015',
  cidVersion: 1,
  rawLeaves: true,
  shardSplitThresholdBytes: Number(process.env.SHARD_THRESHOLD ?? 262144)
}
let entries = 0
function * walk (abs, rel) {
  for (const entry of fs.readdirSync(abs, { withFileTypes: true })) {
    const a = `${abs}/${entry.name}`
    const r = `${rel}/${entry.name}`
    if (entry.isDirectory()) yield * walk(a, r)
    else {
      entries++
      // Read when the importer gets to it: 100,000 files are not held at once.
      yield { path: r, content: (async function * () { yield fs.readFileSync(a) })() }
    }
  }
}
let root
for await (const entry of importer(walk(dir, name), new BlackHoleBlockstore(), options)) {
  if (entry.path === name) root = entry.cid
}
process.stdout.write(JSON.stringify({ cid: root.toString(), entries }) + '\n')
