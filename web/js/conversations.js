// Conversations: one thread per customer across texts and calls; staff send texts, take the
// thread over from the agent and hand it back.
import { api, badge, busy, can, h, subscribe, table, toast, withQuery } from "./core.js";

/** Renders the conversation list, or one thread when the route has an id. */
export async function render(root, params) {
  if (params.id) return renderThread(root, params.id);
  const onlyTaken = params.taken_over === "true";
  root.append(h("h1", {}, "Conversations"),
    h("p", {}, onlyTaken
      ? h("a", { href: "#/conversations" }, "Show all")
      : h("a", { href: "#/conversations?taken_over=true" }, "Show only those staff have taken over")));
  const results = h("div");
  root.append(results);
  async function page(cursor) {
    const data = await api("GET", withQuery("/v1/conversations", { taken_over: onlyTaken ? "true" : "", cursor, limit: 50 }));
    results.querySelector(".more")?.remove();
    results.append(table(["Customer", "Number", "Messages", "Last message", "Handled by"],
      data.items.map((c) => [
        h("a", { href: `#/conversations/${c.id}` }, c.customer_name || "Unknown customer"), c.customer_number,
        String(c.message_count), c.last_message_at ? new Date(c.last_message_at).toLocaleString() : "—",
        c.takeover_user_id ? badge("staff", "speaking") : badge("agent", "listening"),
      ]), cursor ? "" : "No conversations yet."));
    if (data.next_cursor) results.append(h("button", { class: "secondary more", onclick: () => page(data.next_cursor) }, "More"));
  }
  await page();
  return undefined;
}

async function renderThread(root, id) {
  const header = h("div");
  const thread = h("div", { class: "transcript thread", "aria-label": "Messages", "aria-live": "polite" });
  thread.style.maxHeight = "60vh";
  const controls = h("div");
  root.append(h("p", {}, h("a", { href: "#/conversations" }, "← Conversations")), header,
    h("section", { class: "card" }, thread), controls);
  let conversation = null;

  async function load() {
    const detail = await api("GET", `/v1/conversations/${id}`);
    conversation = detail;
    header.replaceChildren(
      h("h1", {}, conversation.customer_name || conversation.customer_number),
      h("p", { class: "row" }, conversation.customer_number,
        conversation.takeover_user_id ? badge("taken over by staff", "speaking") : badge("the agent answers", "listening"),
        conversation.lead_id ? h("a", { href: `#/leads/${conversation.lead_id}` }, "Lead") : null));
    thread.replaceChildren(...detail.messages.map((m) => h("div", {
      class: `line ${m.direction === "inbound" ? "customer" : m.sender === "staff" ? "staff" : "agent"}`,
    }, h("small", {}, `${m.channel} · ${m.sender} · ${new Date(m.created_at).toLocaleString()}${m.status && m.channel === "sms" ? ` · ${m.status}` : ""}`), m.body)));
    thread.scrollTop = thread.scrollHeight;
    renderControls();
  }

  function renderControls() {
    if (!can("handle")) {
      controls.replaceChildren();
      return;
    }
    const text = h("textarea", { name: "body", "aria-label": "Text to send", required: true, maxlength: 1600, placeholder: "Write a text…" });
    const send = h("form", { class: "card", "aria-label": "Send a text" }, text,
      h("div", { class: "row" }, h("button", { type: "submit" }, "Send text")));
    send.addEventListener("submit", (e) => {
      e.preventDefault();
      busy(send.querySelector("button"), async () => {
        await api("POST", `/v1/conversations/${id}/messages`, { body: text.value });
        text.value = "";
        toast("Text sent.");
        await load();
      });
    });
    const taken = Boolean(conversation.takeover_user_id);
    const toggle = h("button", {
      class: taken ? "secondary" : "",
      onclick: (e) => busy(e.target, async () => {
        await api(taken ? "DELETE" : "POST", `/v1/conversations/${id}/takeover`);
        toast(taken ? "Released: the agent answers again." : "Taken over: the agent stays quiet.");
        await load();
      }),
    }, taken ? "Release to the agent" : "Take over");
    controls.replaceChildren(h("div", { class: "row" }, toggle), send);
  }

  await load();
  return subscribe("sms.*,conversation.takeover,call.ended", (event) => {
    const d = event.data || {};
    if (d.customer === conversation?.customer_number || d.id === id || d.conversation_id === id) load();
  });
}
