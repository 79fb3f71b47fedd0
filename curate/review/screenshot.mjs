// Screenshots of Label Studio as a reviewer sees it (headless Chromium): the review tab's
// task list, or one task's labeling view (optionally after clicking a choice, e.g. "correct").
//
//   PLAYWRIGHT_DIR=/tmp/shot/node_modules/playwright-core \
//   LS_URL=http://127.0.0.1:8080 LS_USER=... LS_PASSWORD=... LS_PROJECT=1 [LS_TAB=1] [LS_TASK=3] \
//   [LS_CLICK=correct] [LS_HEIGHT=980] node curate/review/screenshot.mjs docs/review-task.png
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
const query = new URLSearchParams();
if (process.env.LS_TAB) query.set("tab", process.env.LS_TAB);
if (process.env.LS_TASK) query.set("task", process.env.LS_TASK);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: Number(process.env.LS_HEIGHT || 980) } });
  await page.goto(`${base}/user/login/`);
  await page.fill('input[name="email"]', env("LS_USER"));
  await page.fill('input[name="password"]', env("LS_PASSWORD"));
  await Promise.all([page.waitForNavigation(), page.click('button[type="submit"], input[type="submit"]')]);
  await page.goto(`${base}/projects/${env("LS_PROJECT")}/data?${query}`);
  await page.waitForSelector(process.env.LS_TASK ? "text=Decision" : "text=Label All Tasks", { timeout: 60000 });
  await page.waitForTimeout(2500);
  if (process.env.LS_CLICK) {
    const name = process.env.LS_CLICK;
    const radio = page.getByRole("radio", { name: new RegExp(`^${name}`) });
    await ((await radio.count()) ? radio.first() : page.getByText(name, { exact: true }).first()).click();
    await page.waitForTimeout(1000);
  }
  await page.screenshot({ path: out, fullPage: false });
  console.log(`saved ${out}`);
} finally {
  await browser.close();
}
