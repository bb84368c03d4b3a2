// The dashboard's shell: hash routes to screens, the navigation, sign-in, sign-out and
// password reset. Every screen is `render(root, params)` and may return a cleanup function.
import { api, busy, can, dropSession, field, formValues, h, keepSession, session, toast } from "./core.js";
import * as live from "./live.js";
import * as calls from "./calls.js";
import * as conversations from "./conversations.js";
import * as leads from "./leads.js";
import * as knowledge from "./knowledge.js";
import * as agents from "./agents.js";
import * as analytics from "./analytics.js";
import * as team from "./team.js";

/** The screens in the navigation, in its order; `who` limits a screen to a role. */
const SCREENS = [
  { path: "live", title: "Live", render: live.render },
  { path: "calls", title: "Calls", render: calls.render },
  { path: "conversations", title: "Conversations", render: conversations.render },
  { path: "leads", title: "Leads", render: leads.render },
  { path: "knowledge", title: "Knowledge", render: knowledge.render },
  { path: "agents", title: "Agents & numbers", render: agents.render },
  { path: "analytics", title: "Analytics", render: analytics.render },
  { path: "team", title: "Team", render: team.render, who: "admin" },
];

const PUBLIC = { login: renderLogin, forgot: renderForgot, reset: renderReset };

let cleanup = null;

async function route() {
  if (typeof cleanup === "function") cleanup();
  cleanup = null;
  const [path, query = ""] = location.hash.replace(/^#\/?/, "").split("?");
  const [name, ...rest] = path.split("/");
  const params = Object.fromEntries(new URLSearchParams(query));
  const main = document.getElementById("main");
  main.replaceChildren();
  if (PUBLIC[name]) {
    document.getElementById("top").hidden = true;
    PUBLIC[name](main, params);
    return;
  }
  if (!session()) {
    location.hash = "#/login";
    return;
  }
  const screen = SCREENS.find((s) => s.path === name && (!s.who || can(s.who)));
  if (!screen) {
    location.hash = "#/live";
    return;
  }
  showNav(screen);
  document.title = `${screen.title} · switchboard`;
  try {
    cleanup = await screen.render(main, { id: rest.join("/") || null, ...params });
  } catch (e) {
    main.append(h("p", { class: "card", role: "alert" }, e.message));
  }
}

function showNav(current) {
  const s = session();
  document.getElementById("top").hidden = false;
  const nav = document.getElementById("nav");
  nav.classList.remove("open");
  document.getElementById("menu").setAttribute("aria-expanded", "false");
  nav.replaceChildren(...SCREENS.filter((x) => !x.who || can(x.who)).map((x) =>
    h("a", { href: `#/${x.path}`, "aria-current": x === current ? "page" : null }, x.title)));
  document.getElementById("who").textContent = `${s.user.email} · ${s.user.role}`;
}

function renderLogin(main) {
  const form = h("form", { class: "card login", "aria-label": "Sign in" },
    h("h1", {}, "Sign in to switchboard"),
    field("Email", h("input", { name: "email", type: "email", required: true, autocomplete: "username" })),
    field("Password", h("input", { name: "password", type: "password", required: true, autocomplete: "current-password" })),
    h("div", { class: "row" }, h("button", { type: "submit" }, "Sign in"),
      h("a", { href: "#/forgot" }, "Forgot your password?")));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(form.querySelector("button"), async () => {
      keepSession(await api("POST", "/v1/auth/login", formValues(form)));
      location.hash = "#/live";
    });
  });
  main.append(form);
  form.querySelector("input").focus();
}

function renderForgot(main) {
  const form = h("form", { class: "card login", "aria-label": "Reset password" },
    h("h1", {}, "Reset your password"),
    h("p", { class: "muted" }, "We will send a link to set a new password, if the address has an account."),
    field("Email", h("input", { name: "email", type: "email", required: true })),
    h("div", { class: "row" }, h("button", { type: "submit" }, "Send the link"), h("a", { href: "#/login" }, "Back to sign in")));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(form.querySelector("button"), async () => {
      await api("POST", "/v1/auth/password-reset", formValues(form));
      form.replaceChildren(h("h1", {}, "Check your email"),
        h("p", {}, "If that address has an account, a link to set a new password is on its way."),
        h("a", { href: "#/login" }, "Back to sign in"));
    });
  });
  main.append(form);
}

function renderReset(main, params) {
  const form = h("form", { class: "card login", "aria-label": "Set a new password" },
    h("h1", {}, "Set a new password"),
    field("Reset code", h("input", { name: "token", required: true, value: params.token || "" })),
    field("New password", h("input", { name: "password", type: "password", required: true, minlength: 10, autocomplete: "new-password" }),
      "At least 10 characters."),
    h("button", { type: "submit" }, "Set password and sign in"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(form.querySelector("button"), async () => {
      keepSession(await api("POST", "/v1/auth/password-reset/confirm", formValues(form)));
      location.hash = "#/live";
    });
  });
  main.append(form);
}

document.getElementById("logout").addEventListener("click", async (e) => {
  await busy(e.target, async () => {
    const s = session();
    if (s) await api("POST", "/v1/auth/logout", { refresh_token: s.refresh_token }).catch(() => {});
    dropSession();
    toast("Signed out.");
    location.hash = "#/login";
  });
});

document.getElementById("menu").addEventListener("click", (e) => {
  const open = document.getElementById("nav").classList.toggle("open");
  e.target.setAttribute("aria-expanded", String(open));
});

window.addEventListener("hashchange", route);
route();
