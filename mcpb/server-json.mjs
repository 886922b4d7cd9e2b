// Writes to stdout the server.json to publish to the MCP Registry for one
// release: the repository's server.json with VERSION in its version and
// package URLs, and the SHA-256 of each bundle DIST holds (the registry
// requires fileSha256 for MCPB packages; clients check it before they
// install). Packages with no bundle in DIST are left out; none at all is an
// error.
//
//   node mcpb/server-json.mjs DIST VERSION > dist/server.json
//
// CI validates the result against the registry's schema
// (.ci/release.sh: CLINK_SERVER_JSON=... go test ./cmd/clink-mcp -run TestServerJSON).
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const [dist, rawVersion] = process.argv.slice(2);
if (!dist || !rawVersion) {
  console.error("usage: node mcpb/server-json.mjs DIST VERSION");
  process.exit(2);
}
const version = rawVersion.replace(/^v/, "");
const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const server = JSON.parse(readFileSync(join(root, "server.json"), "utf8"));
const was = server.version;

server.version = version;
server.packages = server.packages.flatMap((pkg) => {
  const identifier = pkg.identifier
    .replace(`/download/v${was}/`, `/download/v${version}/`)
    .replace(`_${was}_`, `_${version}_`);
  const file = join(dist, basename(new URL(identifier).pathname));
  if (!existsSync(file)) {
    return [];
  }
  const fileSha256 = createHash("sha256").update(readFileSync(file)).digest("hex");
  return [{ ...pkg, identifier, version, fileSha256 }];
});
if (server.packages.length === 0) {
  console.error(`server-json: no bundle of server.json's packages in ${dist}`);
  process.exit(1);
}
process.stdout.write(JSON.stringify(server, null, 2) + "\n");
