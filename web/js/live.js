// Live: the calls in progress, their transcripts as they are spoken, what the agent is doing,
// and staff's controls (take over, transfer, say, hang up, listen).
import { api, busy, can, duration, h, subscribe, toast, withQuery } from "./core.js";
import { listen } from "./listen.js";

/** Renders the Live screen; returns the cleanup that closes the event stream. */
export async function render(root) {
  const list = h("div", { class: "grid", id: "live-calls" });
  const empty = h("p", { class: "empty" }, "No calls in progress. New calls appear here as they ring.");
  const status = h("span", { id: "stream-status", class: "badge queued", role: "status" }, "connecting…");
  root.append(h("div", { class: "row heading" }, h("h1", {}, "Live calls"), status), empty, list);
  const cards = new Map();
  const refreshEmpty = () => { empty.hidden = cards.size > 0; };

  const stop = subscribe("call.*", async (event) => {
    if (!event.call_id) return;
    let card = cards.get(event.call_id);
    if (!card && (event.type === "call.ringing" || event.type === "call.started" || event.type === "call.transcript")) {
      card = await addCard(event.call_id);
    }
    card?.on(event);
    refreshEmpty();
  }, (connected) => {
    status.textContent = connected ? "live" : "reconnecting…";
    status.className = `badge ${connected ? "ready" : "queued"}`;
    status.dataset.connected = String(connected);
  });

  async function addCard(id) {
    if (cards.has(id)) return cards.get(id);
    const call = await api("GET", `/v1/calls/${id}`).catch(() => ({ id }));
    if (cards.has(id)) return cards.get(id);
    const card = callCard(call, () => { cards.delete(id); refreshEmpty(); });
    cards.set(id, card);
    list.append(card.el);
    return card;
  }

  for (const status of ["in-progress", "ringing"]) {
    const page = await api("GET", withQuery("/v1/calls", { status, limit: 50 }));
    for (const call of page.items) {
      const card = await addCard(call.id);
      const detail = await api("GET", `/v1/calls/${call.id}`).catch(() => null);
      for (const turn of detail?.turns || []) card.line(turn.speaker, turn.text, true);
    }
  }
  refreshEmpty();
  return stop;
}

/** One live call's card; `on(event)` applies an event to it. */
function callCard(call, gone) {
  const state = h("span", { class: "badge ringing", "aria-live": "polite" }, call.status === "in-progress" ? "listening" : "ringing");
  const transcript = h("div", { class: "transcript", "aria-label": "Transcript", "aria-live": "polite" });
  const started = call.started_at ? new Date(call.started_at) : new Date();
  const clock = h("span", { class: "muted" }, "");
  const timer = setInterval(() => { clock.textContent = duration(Date.now() - started); }, 1000);
  let partial = null;
  let stopListening = null;

  const controls = h("div", { class: "row" });
  if (can("handle")) {
    const sayBox = h("input", { "aria-label": "Words for the agent to say", placeholder: "Say…", maxlength: 1000 });
    controls.append(
      call.conversation_id ? h("button", {
        onclick: (e) => busy(e.target, async () => {
          await api("POST", `/v1/conversations/${call.conversation_id}/takeover`);
          toast("You have taken over; the call goes to the transfer number.");
        }),
      }, "Take over") : null,
      h("button", {
        class: "secondary",
        onclick: (e) => busy(e.target, async () => {
          const to = prompt("Transfer to (E.164, empty for the agent's transfer number):", "");
          if (to === null) return;
          await api("POST", `/v1/calls/${call.id}/transfer`, to ? { to } : {});
          toast("Transferring.");
        }),
      }, "Transfer"),
      h("button", {
        class: "danger",
        onclick: (e) => busy(e.target, async () => {
          if (!confirm("Hang up this call?")) return;
          await api("POST", `/v1/calls/${call.id}/hangup`);
        }),
      }, "Hang up"),
      h("form", {
        class: "row",
        onsubmit: (e) => {
          e.preventDefault();
          if (!sayBox.value.trim()) return;
          busy(e.target.querySelector("button"), async () => {
            await api("POST", `/v1/calls/${call.id}/say`, { text: sayBox.value });
            sayBox.value = "";
          });
        },
      }, sayBox, h("button", { type: "submit", class: "secondary" }, "Say")),
    );
  }
  const listenButton = h("button", {
    class: "secondary",
    "aria-pressed": "false",
    onclick: async () => {
      if (stopListening) {
        stopListening();
        stopListening = null;
      } else {
        stopListening = await listen(call.id).catch((e) => { toast(e.message, "error"); return null; });
      }
      listenButton.textContent = stopListening ? "Stop listening" : "Listen";
      listenButton.setAttribute("aria-pressed", String(Boolean(stopListening)));
    },
  }, "Listen");
  controls.append(listenButton);

  const el = h("article", { class: "card live-call", dataset: { callId: call.id } },
    h("div", { class: "row" },
      h("strong", {}, call.from_number || "Caller"), h("span", { class: "muted" }, `→ ${call.to_number || ""}`),
      state, clock, h("a", { href: `#/calls/${call.id}` }, "Details")),
    transcript, controls);

  function setState(word) {
    state.textContent = word;
    state.className = `badge ${word}`;
  }

  function line(speaker, text, final) {
    if (partial && speaker === "customer") {
      partial.remove();
      partial = null;
    }
    const item = h("div", { class: `line ${speaker}${final ? "" : " partial"}` }, h("small", {}, speaker), text);
    if (!final && speaker === "customer") partial = item;
    transcript.append(item);
    transcript.scrollTop = transcript.scrollHeight;
  }

  function on(event) {
    const d = event.data || {};
    switch (event.type) {
      case "call.started": setState("listening"); break;
      case "call.transcript":
        line(d.speaker, d.text, d.final);
        if (d.final) setState(d.speaker === "customer" ? "thinking" : "listening");
        break;
      case "call.agent_speaking": setState("speaking"); break;
      case "call.barge_in": setState("listening"); break;
      case "call.ended":
      case "call.failed":
        setState(event.type === "call.failed" ? "failed" : "completed");
        clearInterval(timer);
        stopListening?.();
        for (const b of controls.querySelectorAll("button,input")) b.disabled = true;
        setTimeout(() => { el.remove(); gone(); }, 5000);
        break;
      default:
    }
  }

  return { el, on, line };
}
