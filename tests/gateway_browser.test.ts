/**
 * A real browser against the gateway: headless Chromium (one browser for the
 * file) loads the index, the test reads the file names, sizes and links from
 * the DOM and takes a screenshot, then follows a download link and gets the
 * file byte-identical, under the exact name Content-Disposition gives.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { assertSameFile, startCluster } from "./harness.ts";
import { missingTool } from "./missing_tool.ts";
import { startGateway } from "./gateway_util.ts";
import { HeadlessChromium } from "./headless_chromium.ts";

const MiB = 1024 * 1024;
const ODD_NAME = "résumé 2026.pdf";

Deno.test({
  name: "gateway: headless Chromium reads the index, takes a screenshot and downloads by a link",
  ignore: missingTool("chromium"),
  async fn() {
    const cluster = await startCluster({
      servers: 3,
      replicas: 2,
      files: { "movie.bin": 3 * MiB + 17, [ODD_NAME]: 123_457 },
    });
    let gateway;
    let browser: HeadlessChromium | undefined;
    try {
      gateway = await startGateway(["--data", cluster.dir]);
      browser = await HeadlessChromium.start();
      const page = await browser.newPage();
      await browser.navigate(page, `${gateway.url}/`);
      const rows = await browser.evaluate<
        { name: string; size: number; href: string; metalink: string; health: string }[]
      >(
        page,
        `[...document.querySelectorAll("#files tbody tr")].map((tr) => ({
          name: tr.querySelector("td.name a").textContent,
          size: Number(tr.dataset.size),
          href: tr.querySelector("td.name a").href,
          metalink: tr.querySelector("td.metalink a").href,
          health: tr.querySelector("td.health").textContent,
        }))`,
      );
      assert.deepEqual(
        rows.map((r) => r.name),
        ["movie.bin", ODD_NAME].sort((a, b) => a.localeCompare(b)),
      );
      const movie = rows.find((r) => r.name === "movie.bin")!;
      assert.equal(movie.size, 3 * MiB + 17);
      assert.equal(movie.href, `${gateway.url}/files/movie.bin`);
      assert.equal(movie.metalink, `${gateway.url}/files/movie.bin.meta4`);
      assert.equal(movie.health, "healthy");
      const shown = await browser.evaluate<string>(page, "document.body.innerText");
      assert.match(shown, /3\.0 MiB/);

      const png = await browser.screenshot(page);
      assert.deepEqual([...png.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47]);
      assert.ok(
        png.length > 5_000,
        `a ${png.length}-byte screenshot is too small to show the table`,
      );
      await Deno.writeFile(join(cluster.work, "index.png"), png);

      // Follow the link of the file with an accented name: the download keeps that name.
      const downloads = join(cluster.work, "downloads");
      await Deno.mkdir(downloads);
      await browser.send("Browser.setDownloadBehavior", {
        behavior: "allow",
        downloadPath: downloads,
        eventsEnabled: true,
      });
      const begun = browser.event("Browser.downloadWillBegin");
      const done = browser.event(
        "Browser.downloadProgress",
        (p) => p.state === "completed" || p.state === "canceled",
        60_000,
      );
      await browser.evaluate(
        page,
        `[...document.querySelectorAll("td.name a")].find((a) => a.textContent === ${
          JSON.stringify(ODD_NAME)
        }).click()`,
      );
      assert.equal((await begun).suggestedFilename, ODD_NAME);
      assert.equal((await done).state, "completed");
      await assertSameFile(join(downloads, ODD_NAME), join(cluster.work, "src", ODD_NAME));
    } finally {
      await browser?.close();
      await gateway?.stop();
      await cluster.stop();
    }
  },
});
