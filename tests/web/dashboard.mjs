// Drives the staff dashboard in headless Chromium. Started by tests/dashboard.rs, which runs
// the server and reads this script's stdout: "@ready-for-call" asks it to place a simulated
// call, "@done" says every check passed. Any failed check or console error exits non-zero.
import { chromium } from "playwright-core";
import assert from "node:assert/strict";
import path from "node:path";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const BASE = env("BASE_URL");
const SHOTS = env("SHOTS");
const PASSWORD = env("PASSWORD");
const CALLER = env("CALLER");
const STAFF_TEXT = "A person from our team here: we close at 5 pm on Saturdays.";

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const problems = [];
// Set while a step provokes a refusal on purpose: Chromium logs every 4xx as a console error.
let expectedStatus = null;
const timeout = 20_000;

async function newPage(viewport = { width: 1280, height: 900 }) {
  const page = await (await browser.newContext({ viewport })).newPage();
  page.setDefaultTimeout(timeout);
  page.on("console", (m) => {
    if (m.type() !== "error") return;
    if (expectedStatus && m.text().includes(`status of ${expectedStatus}`)) return;
    problems.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  return page;
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

function step(text) {
  console.log(`step: ${text}`);
}

async function signIn(page, email) {
  await page.goto(`${BASE}/`);
  await page.waitForURL(/#\/login$/);
  await page.locator("input[name=email]:focus").waitFor();
  // By keyboard only: the email field has focus, Tab moves on, Enter submits.
  await page.keyboard.type(email);
  await page.keyboard.press("Tab");
  await page.keyboard.type(PASSWORD);
  await page.keyboard.press("Enter");
  await page.waitForURL(/#\/live$/);
}

try {
  const page = await newPage();

  step("sign in by keyboard");
  await page.goto(`${BASE}/`);
  await page.getByRole("heading", { name: "Sign in to switchboard" }).waitFor();
  await shot(page, "login");
  await page.getByLabel("Email").fill("nobody@example.com");
  await page.getByLabel("Password").fill("not the password");
  expectedStatus = 401;
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("alert").filter({ hasText: /password|credentials|sign/i }).waitFor();
  expectedStatus = null;
  await page.getByRole("alert").getByRole("button", { name: "Dismiss" }).click();
  await signIn(page, env("OWNER_EMAIL"));

  step("a simulated call appears on Live with its transcript");
  await page.locator("#stream-status[data-connected=true]").waitFor();
  console.log("@ready-for-call");
  const card = page.locator(".live-call", { hasText: CALLER });
  await card.waitFor();
  await card.locator(".line.customer", { hasText: env("CALLER_LINE") }).waitFor();
  await card.getByRole("button", { name: "Hang up" }).waitFor();
  await card.getByRole("button", { name: "Take over" }).waitFor();
  await card.locator(".line.agent").first().waitFor();
  await shot(page, "live-call");
  await card.locator(".badge", { hasText: "completed" }).waitFor({ timeout: 30_000 });

  step("the call is in the history with its turns and latency");
  await page.getByRole("link", { name: "Calls" }).click();
  await page.getByRole("cell", { name: CALLER }).first().waitFor();
  await shot(page, "calls");
  await page.locator("tbody tr", { hasText: CALLER }).first().getByRole("link").click();
  await page.getByRole("heading", { name: `Call from ${CALLER}` }).waitFor();
  await page.getByRole("cell", { name: env("CALLER_LINE") }).waitFor();
  assert.ok(await page.locator(".bar span").count() > 0, "a latency bar per agent turn");
  await shot(page, "call");

  step("take over the caller's conversation and send a text");
  await page.getByRole("link", { name: "Conversations" }).click();
  await page.locator("tbody tr", { hasText: CALLER }).getByRole("link").click();
  await page.getByRole("button", { name: "Take over" }).click();
  await page.getByText("taken over by staff").waitFor();
  await page.getByLabel("Text to send").fill(STAFF_TEXT);
  await page.getByRole("button", { name: "Send text" }).click();
  await page.locator(".line.staff", { hasText: STAFF_TEXT }).waitFor();
  await shot(page, "conversation");

  step("leads");
  await page.getByRole("link", { name: "Leads" }).click();
  await page.getByRole("heading", { name: "Leads" }).waitFor();
  await page.locator("summary", { hasText: "New lead" }).click();
  await page.getByLabel("Name", { exact: true }).first().fill("Dana Whitfield");
  await page.getByLabel("Phone").fill("+15550001111");
  await page.getByRole("button", { name: "Add" }).click();
  await page.getByRole("heading", { name: "Dana Whitfield" }).waitFor();
  await page.getByLabel("Notes").fill("Wants a test drive on Saturday.");
  await page.getByRole("button", { name: "Save" }).click();
  await page.locator("li", { hasText: "notes" }).waitFor();
  await shot(page, "lead");
  await page.getByRole("link", { name: "← Leads" }).click();
  await page.getByRole("cell", { name: "Dana Whitfield" }).waitFor();
  await shot(page, "leads");

  step("upload a document and watch it become ready");
  await page.getByRole("link", { name: "Knowledge" }).click();
  await page.getByLabel("Document", { exact: true }).setInputFiles(env("DOCUMENT"));
  await page.getByRole("button", { name: "Upload" }).click();
  const row = page.locator("#documents tbody tr", { hasText: "service-manual.pdf" });
  await row.locator(".badge", { hasText: "ready" }).waitFor({ timeout: 60_000 });
  await page.getByLabel("Question").fill("vault code");
  await page.getByRole("button", { name: "Search" }).click();
  await page.locator("form[role=search] tbody tr").first().waitFor();
  await shot(page, "knowledge");

  step("agents and numbers");
  await page.getByRole("link", { name: "Agents & numbers" }).click();
  await page.getByRole("cell", { name: "Front desk" }).first().waitFor();
  await shot(page, "agents");
  await page.getByRole("link", { name: "Front desk" }).click();
  await page.getByLabel("First message").fill("Hi {{customer_name}}, thanks for calling {{tenant_name}}. {{favourite_colour}}?");
  await page.getByRole("button", { name: "Save" }).click();
  await page.getByText("Unknown variables, filled with nothing: {{favourite_colour}}").waitFor();
  await shot(page, "agent");

  step("analytics and team");
  await page.getByRole("link", { name: "Analytics" }).click();
  await page.locator(".uplot canvas").waitFor();
  await shot(page, "analytics");
  await page.getByRole("link", { name: "Team" }).click();
  await page.getByRole("cell", { name: env("VIEWER_EMAIL"), exact: true }).waitFor();
  await shot(page, "team");

  step("sign out");
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("heading", { name: "Sign in to switchboard" }).waitFor();

  step("phone width: no sideways scrolling, the menu opens");
  const phone = await newPage({ width: 390, height: 844 });
  await signIn(phone, env("OWNER_EMAIL"));
  await phone.getByRole("heading", { name: "Live calls" }).waitFor();
  for (const screen of ["live", "calls", "leads", "knowledge", "analytics"]) {
    await phone.goto(`${BASE}/#/${screen}`);
    await phone.locator("main h1").first().waitFor();
    const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `${screen} scrolls sideways by ${overflow}px at phone width`);
  }
  await phone.goto(`${BASE}/#/live`);
  await phone.getByRole("button", { name: "Menu" }).click();
  await phone.getByRole("link", { name: "Conversations" }).waitFor();
  await shot(phone, "phone-live");

  step("a viewer sees no write controls, and the server refuses them anyway");
  const viewer = await newPage();
  await signIn(viewer, env("VIEWER_EMAIL"));
  await viewer.getByRole("link", { name: "Leads" }).click();
  await viewer.getByRole("cell", { name: "Dana Whitfield" }).waitFor();
  assert.equal(await viewer.locator("summary", { hasText: "New lead" }).count(), 0, "no new-lead form");
  await shot(viewer, "viewer-leads");
  await viewer.getByRole("link", { name: "Dana Whitfield" }).click();
  await viewer.getByLabel("Notes").waitFor();
  assert.ok(await viewer.getByLabel("Notes").isDisabled(), "lead fields are read-only");
  assert.equal(await viewer.getByRole("button", { name: "Save" }).count(), 0);
  assert.equal(await viewer.getByRole("button", { name: "Call now" }).count(), 0);
  await viewer.getByRole("link", { name: "Conversations" }).click();
  await viewer.locator("tbody tr", { hasText: CALLER }).getByRole("link").click();
  await viewer.locator(".line.staff").first().waitFor();
  assert.equal(await viewer.getByRole("button", { name: /Take over|Release/ }).count(), 0);
  assert.equal(await viewer.getByLabel("Text to send").count(), 0);
  await viewer.getByRole("link", { name: "Knowledge" }).click();
  await viewer.locator("#documents tbody tr").first().waitFor();
  assert.equal(await viewer.getByLabel("Document", { exact: true }).count(), 0, "no upload form");
  assert.equal(await viewer.getByRole("button", { name: /Delete/ }).count(), 0);
  await viewer.getByRole("link", { name: "Agents & numbers" }).click();
  await viewer.getByRole("cell", { name: "Front desk" }).first().waitFor();
  assert.equal(await viewer.getByRole("button", { name: /Create agent|Add number|Remove/ }).count(), 0);
  assert.equal(await viewer.getByRole("link", { name: "Team" }).count(), 0, "no Team screen");
  expectedStatus = 403;
  const refused = await viewer.evaluate(async () => {
    const { access_token: token } = JSON.parse(sessionStorage.getItem("switchboard.session"));
    const r = await fetch("/v1/leads", {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ name: "Sneaky" }),
    });
    return r.status;
  });
  expectedStatus = null;
  assert.equal(refused, 403, "the server refuses a viewer's write");

  step("forgot password, then set one from an invitation link");
  const fresh = await newPage();
  await fresh.goto(`${BASE}/#/login`);
  await fresh.getByRole("link", { name: "Forgot your password?" }).click();
  await fresh.getByLabel("Email").fill(env("VIEWER_EMAIL"));
  await fresh.getByRole("button", { name: "Send the link" }).click();
  await fresh.getByRole("heading", { name: "Check your email" }).waitFor();
  await fresh.goto(`${BASE}/#/reset?token=${encodeURIComponent(env("INVITATION"))}`);
  await shot(fresh, "reset");
  await fresh.getByLabel("New password", { exact: true }).fill("a brand new password");
  await fresh.getByRole("button", { name: "Set password and sign in" }).click();
  await fresh.waitForURL(/#\/live$/);
  await fresh.locator("#who", { hasText: "· agent" }).waitFor();

  assert.deepEqual(problems, [], "no console errors");
  console.log("@done");
} catch (e) {
  console.log(`FAILED: ${e.stack || e}`);
  // What each open page showed when it failed, for the one reading the test output.
  let n = 0;
  for (const context of browser.contexts()) {
    for (const open of context.pages()) {
      n += 1;
      await open.screenshot({ path: path.join(SHOTS, `failure-${n}.png`), fullPage: true }).catch(() => {});
    }
  }
  if (problems.length) console.log(`console problems:\n${problems.join("\n")}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
