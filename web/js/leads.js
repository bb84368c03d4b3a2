// Leads: a searchable, filterable table; one lead's fields (editable by staff), contact
// history, audit trail of every change and who made it, and "call now".
import { api, badge, busy, can, duration, field, formValues, h, table, toast, when, withQuery } from "./core.js";

const STATUSES = ["new", "contacted", "qualified", "appointment", "won", "lost"];
const SENTIMENTS = ["positive", "neutral", "negative"];

function options(values, selected, any = "Any") {
  return [any === null ? null : h("option", { value: "" }, any),
    ...values.map((v) => h("option", { value: v, selected: v === selected }, v))];
}

/** Renders the lead table, or one lead when the route has an id. */
export async function render(root, params) {
  if (params.id) return renderLead(root, params.id);
  const filters = h("form", { class: "card row", role: "search", "aria-label": "Find leads" },
    field("Search", h("input", { name: "q", type: "search", value: params.q || "", placeholder: "Name, phone, email, notes" })),
    field("Status", h("select", { name: "status" }, options(STATUSES, params.status))),
    field("Sentiment", h("select", { name: "sentiment" }, options(SENTIMENTS, params.sentiment))),
    field("Sort", h("select", { name: "sort" }, [["-updated_at", "Recently updated"], ["-created_at", "Newest"], ["name", "Name"], ["-last_contact_at", "Last contact"]]
      .map(([v, t]) => h("option", { value: v, selected: v === params.sort }, t)))),
    h("button", { type: "submit" }, "Search"));
  filters.addEventListener("submit", (e) => {
    e.preventDefault();
    location.hash = withQuery("#/leads", formValues(filters));
  });
  const results = h("div");
  root.append(h("h1", {}, "Leads"), filters);
  if (can("handle")) root.append(newLeadForm());
  root.append(results);
  async function page(cursor) {
    const data = await api("GET", withQuery("/v1/leads", { q: params.q, status: params.status, sentiment: params.sentiment, sort: params.sort, cursor, limit: 50 }));
    results.querySelector(".more")?.remove();
    results.append(table(["Name", "Phone", "Status", "Sentiment", "Calls", "Texts", "Last contact"],
      data.items.map((l) => [h("a", { href: `#/leads/${l.id}` }, l.name || "(no name)"), l.phone || "—", badge(l.status),
        badge(l.sentiment), String(l.call_count), String(l.message_count), when(l.last_contact_at)]),
      cursor ? "" : "No leads match."));
    if (data.next_cursor) results.append(h("button", { class: "secondary more", onclick: () => page(data.next_cursor) }, "More"));
  }
  await page();
  return undefined;
}

function newLeadForm() {
  const form = h("form", { class: "row" },
    field("Name", h("input", { name: "name", required: true })),
    field("Phone", h("input", { name: "phone", placeholder: "+15551230000" })),
    h("button", { type: "submit" }, "Add"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(form.querySelector("button"), async () => {
      const v = formValues(form);
      const lead = await api("POST", "/v1/leads", { name: v.name, ...(v.phone ? { phone: v.phone } : {}) });
      location.hash = `#/leads/${lead.id}`;
    });
  });
  return h("details", { class: "card" }, h("summary", {}, "New lead"), form);
}

async function renderLead(root, id) {
  const [lead, changes, users] = await Promise.all([
    api("GET", `/v1/leads/${id}`),
    api("GET", `/v1/leads/${id}/changes`),
    api("GET", "/v1/users").catch(() => ({ items: [] })),
  ]);
  const names = new Map((users.items || users).map((u) => [u.id, u.name || u.email]));
  const write = can("handle");
  const input = (name, value, attrs = {}) => h("input", { name, value: value ?? "", disabled: !write, ...attrs });
  const form = h("form", { class: "card", "aria-label": "Lead fields" },
    h("div", { class: "row" },
      field("Name", input("name", lead.name)),
      field("Phone", input("phone", lead.phone)),
      field("Email", input("email", lead.email, { type: "email" })),
      field("Status", h("select", { name: "status", disabled: !write }, options(STATUSES, lead.status, null))),
      field("Sentiment", h("select", { name: "sentiment", disabled: !write }, options(SENTIMENTS, lead.sentiment, "—"))),
      field("Funding readiness", input("funding_readiness", lead.funding_readiness)),
      field("Credit profile", input("credit_profile", lead.credit_profile))),
    field("Notes", h("textarea", { name: "notes", disabled: !write }, lead.notes || "")),
    write ? h("button", { type: "submit" }, "Save") : null);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(form.querySelector("button[type=submit]"), async () => {
      const v = formValues(form);
      const patch = {};
      for (const [k, value] of Object.entries(v)) {
        const before = lead[k] ?? "";
        if (value !== before) patch[k] = value === "" && k !== "notes" && k !== "name" ? null : value;
      }
      if (!Object.keys(patch).length) return toast("Nothing changed.");
      await api("PATCH", `/v1/leads/${id}`, patch);
      toast("Saved.");
      location.reload();
      return undefined;
    });
  });
  const extra = { ...lead.preferences, ...lead.custom_fields };
  root.append(
    h("p", {}, h("a", { href: "#/leads" }, "← Leads")),
    h("div", { class: "row" }, h("h1", {}, lead.name || lead.phone || "Lead"), badge(lead.status),
      write && lead.phone ? h("button", {
        onclick: (e) => busy(e.target, async () => {
          const call = await api("POST", `/v1/leads/${id}/call`, {});
          toast("Calling now.");
          location.hash = `#/calls/${call.id}`;
        }),
      }, "Call now") : null),
    form,
    h("div", { class: "grid" },
      h("section", { class: "card" }, h("h2", {}, "History"), h("dl", { class: "kv" },
        [h("dt", {}, "Calls"), h("dd", {}, `${lead.call_count} (${duration(lead.total_call_ms)} in all)`)],
        [h("dt", {}, "Texts"), h("dd", {}, String(lead.message_count))],
        [h("dt", {}, "Last contact"), h("dd", {}, when(lead.last_contact_at))],
        [h("dt", {}, "Created"), h("dd", {}, when(lead.created_at))]),
      h("p", {}, h("a", { href: withQuery("#/calls", { number: lead.phone }) }, "This number's calls"))),
      h("section", { class: "card" }, h("h2", {}, "Learnt and custom fields"),
        Object.keys(extra).length
          ? h("dl", { class: "kv" }, Object.entries(extra).map(([k, v]) => [h("dt", {}, k), h("dd", {}, typeof v === "string" ? v : JSON.stringify(v))]))
          : h("p", { class: "empty" }, "None yet."))),
    h("section", { class: "card" }, h("h2", {}, "Audit trail"),
      table(["When", "Who", "Changes"], (changes.items || changes).map((c) => [
        when(c.created_at),
        c.actor_kind === "user" ? names.get(c.user_id) || "staff" : c.actor_kind === "system" ? "post-call analysis" : c.actor_kind,
        h("ul", {}, Object.entries(c.changes).map(([k, d]) => h("li", {}, `${k}: ${show(d.from)} → ${show(d.to)}`))),
      ]), "No changes recorded.")));
}

function show(value) {
  if (value === null || value === undefined || value === "") return "∅";
  return typeof value === "string" ? value : JSON.stringify(value);
}
