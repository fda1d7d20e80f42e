// Runs every http-cache-tests test against a cache at BASE and writes one JSON document:
// each test's id, kind, outcome and detail, plus the counts. Outcomes follow the package's
// own display rules (lib/display.mjs): a test whose dependency did not pass is
// "dependency_failed", a setup error "setup_failed", and a failed "optimal" test
// "optional_failed"; "check" tests record behaviour only ("yes"/"no").
//     node client.mjs BASE OUT.json
import fs from 'fs'
import process from 'process'
import fetch from 'node-fetch'

import { runTests, getResults } from '../../node_modules/http-cache-tests/client/runner.mjs'
import tests from '../../node_modules/http-cache-tests/tests/index.mjs'
import surrogate from '../../node_modules/http-cache-tests/tests/surrogate-control.mjs'

const [base, out] = process.argv.slice(2)
if (!base || !out) {
  console.error('usage: node client.mjs BASE OUT.json')
  process.exit(2)
}
tests.push(surrogate)

const byId = new Map()
for (const suite of tests) {
  for (const test of suite.tests) byId.set(test.id, { suite: suite.id, test })
}

function outcome (id, results, seen = new Set()) {
  const { test } = byId.get(id)
  const result = results[id]
  if (result === undefined) return 'untested'
  for (const dep of test.depends_on || []) {
    if (seen.has(dep)) continue
    if (!['passed', 'yes'].includes(outcome(dep, results, new Set([...seen, id])))) {
      return 'dependency_failed'
    }
  }
  if (result !== true && result[0] === 'Setup') {
    return result[1] === 'retry' ? 'retried' : 'setup_failed'
  }
  const kind = test.kind || 'required'
  if (kind === 'check') return result === true ? 'yes' : 'no'
  if (result === true) return 'passed'
  if (result[0] !== 'Assertion') return 'harness_failed'
  return kind === 'optimal' ? 'optional_failed' : 'failed'
}

const started = Date.now()
await runTests(tests, fetch, false, base)
const results = getResults()
const rows = []
const counts = {}
for (const [id, { suite, test }] of byId) {
  if (test.browser_only) continue
  const result = outcome(id, results)
  counts[result] = (counts[result] || 0) + 1
  const detail = results[id] === true || results[id] === undefined ? '' : String(results[id][1])
  rows.push({ id, suite, kind: test.kind || 'required', name: test.name, outcome: result, detail })
}
const doc = { base, seconds: (Date.now() - started) / 1000, counts, tests: rows }
fs.writeFileSync(out, JSON.stringify(doc, null, 2))
console.log(JSON.stringify(counts))
