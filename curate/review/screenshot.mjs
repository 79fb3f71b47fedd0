// Screenshot of one Label Studio task as a reviewer sees it (headless Chromium).
//
//   PLAYWRIGHT_DIR=/tmp/shot/node_modules/playwright-core \
//   LS_URL=http://127.0.0.1:8080 LS_USER=... LS_PASSWORD=... LS_PROJECT=1 LS_TASK=3 \
//   node curate/review/screenshot.mjs docs/review-task.png
//
// playwright-core (npm) is installed outside the repo; Chromium is Debian's /usr/bin/chromium.
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { chromium } = require(process.env.PLAYWRIGHT_DIR || "playwright-core");
const env = (name) => {
  if (!process.env[name]) throw new Error(`set ${name}`);
  return process.env[name];
};
const base = env("LS_URL").replace(/\/$/, "");
const out = process.argv[2] || "docs/review-task.png";

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 980 } });
  await page.goto(`${base}/user/login/`);
  await page.fill('input[name="email"]', env("LS_USER"));
  await page.fill('input[name="password"]', env("LS_PASSWORD"));
  await Promise.all([page.waitForNavigation(), page.click('button[type="submit"], input[type="submit"]')]);
  await page.goto(`${base}/projects/${env("LS_PROJECT")}/data?task=${env("LS_TASK")}`);
  await page.waitForSelector("text=Decision", { timeout: 60000 });
  await page.waitForTimeout(2500);
  await page.screenshot({ path: out, fullPage: false });
  console.log(`saved ${out}`);
} finally {
  await browser.close();
}
