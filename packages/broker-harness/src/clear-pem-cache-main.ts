/** Entry point of pemCacheReloadCommand: `node clear-pem-cache-main.js <harnessDir>`. */
import { clearPemCacheInDir } from './control.js';

const [dir] = process.argv.slice(2);
if (dir === undefined) {
  process.stderr.write('usage: clear-pem-cache-main.js <harnessDir>\n');
  process.exit(2);
}
await clearPemCacheInDir(dir);
