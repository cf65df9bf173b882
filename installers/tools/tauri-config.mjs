// Prints the Tauri configuration a release build merges over technician-app/desktop/tauri.conf.json
// (`tauri build --config FILE`) for one platform: the four-part product version where the bundle
// format has room for it, and the Windows signing certificate when the workflow imported one.
//
//   node installers/tools/tauri-config.mjs windows|macos|linux
//
// The version comes from the one place that sets it, [workspace.package] in the root Cargo.toml, and
// the build number from PRODUCT_BUILD (0 when unset), as for every other binary and package.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const platform = process.argv[2];
const manifest = readFileSync(fileURLToPath(new URL("../../Cargo.toml", import.meta.url)), "utf8");
const section = manifest.split(/^\[workspace\.package\]$/m)[1]?.split(/^\[/m)[0] ?? "";
const base = section.match(/^version\s*=\s*"(\d+\.\d+\.\d+)"/m)?.[1];
const build = process.env.PRODUCT_BUILD || "0";
if (!base) {
  console.error("tauri-config: no version in [workspace.package] of Cargo.toml");
  process.exit(2);
}
if (!/^\d{1,5}$/.test(build) || Number(build) > 65535) {
  console.error(`tauri-config: PRODUCT_BUILD must be a number from 0 to 65535, not ${JSON.stringify(build)}`);
  process.exit(2);
}
const version = `${base}.${build}`;

let bundle;
switch (platform) {
  case "windows": {
    const windows = { wix: { version } };
    const thumbprint = process.env.SIGNING_THUMBPRINT?.trim();
    if (thumbprint) windows.certificateThumbprint = thumbprint;
    bundle = { windows };
    break;
  }
  case "macos":
    bundle = { macOS: { bundleVersion: version } };
    break;
  case "linux":
    bundle = {};
    break;
  default:
    console.error("usage: node installers/tools/tauri-config.mjs windows|macos|linux");
    process.exit(2);
}
console.log(JSON.stringify({ bundle }, null, 2));
