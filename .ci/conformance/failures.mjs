// node failures.mjs DIR BASELINE: prints every check that did not pass
// (FAILURE or WARNING) in the conformance suite's --output-dir DIR, one a
// line, with what it says and whether BASELINE (the expected-failures file)
// lists it, for the CI log when the suite reports an unexpected result.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const [dir, baselineFile] = process.argv.slice(2);
const expected = new Set();
for (const line of readFileSync(baselineFile, 'utf8').split('\n')) {
  const m = /^\s*-\s+([^\s#]+)/.exec(line);
  if (m) expected.add(m[1]);
}
for (const run of readdirSync(dir).sort()) {
  let checks;
  try {
    checks = JSON.parse(readFileSync(join(dir, run, 'checks.json'), 'utf8'));
  } catch {
    continue;
  }
  const scenario = run.replace(/^server-/, '').replace(/-\d{4}-\d\d-\d\dT[\d-]+Z$/, '');
  for (const c of checks) {
    if (c.status !== 'FAILURE' && c.status !== 'WARNING') continue;
    const details = c.details ? ' ' + JSON.stringify(c.details).slice(0, 600) : '';
    const listed = expected.has(scenario) || expected.has(`${scenario}:${c.id}`);
    console.log(`  ${listed ? 'expected  ' : 'UNEXPECTED'} ${c.status} ${scenario}:${c.id}: ${c.errorMessage ?? c.description ?? ''}${details}`);
  }
}
