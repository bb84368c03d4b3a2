// Calls: history with filters and pages, and one call's transcript, summary, sentiment,
// extracted fields and per-turn latency by stage.
import { api, badge, duration, field, formValues, h, table, when, withQuery } from "./core.js";

/** The stages of a reply, in the order they happen, with their bar colours. */
export const STAGES = [
  ["endpointing_ms", "Endpointing", "#9aa5b8"],
  ["stt_ms", "Speech to text", "#4f7fe0"],
  ["retrieval_ms", "Knowledge", "#8a63d2"],
  ["llm_first_token_ms", "LLM first token", "#e08a2e"],
  ["tts_first_byte_ms", "TTS first byte", "#2e9e6a"],
];

/** Renders the call list, or one call when the route has an id. */
export async function render(root, params) {
  if (params.id) return renderCall(root, params.id);
  const filters = h("form", { class: "card row", "aria-label": "Filter calls" },
    field("Status", h("select", { name: "status" }, ["", "in-progress", "completed", "failed", "busy", "no-answer", "canceled"]
      .map((s) => h("option", { value: s, selected: s === params.status }, s || "Any")))),
    field("Direction", h("select", { name: "direction" }, ["", "inbound", "outbound"]
      .map((s) => h("option", { value: s, selected: s === params.direction }, s || "Any")))),
    field("Sentiment", h("select", { name: "sentiment" }, ["", "positive", "neutral", "negative"]
      .map((s) => h("option", { value: s, selected: s === params.sentiment }, s || "Any")))),
    field("Number", h("input", { name: "number", placeholder: "+1555…", value: params.number || "" })),
    field("From", h("input", { name: "from", type: "date", value: params.from || "" })),
    field("To", h("input", { name: "to", type: "date", value: params.to || "" })),
    h("button", { type: "submit" }, "Filter"));
  filters.addEventListener("submit", (e) => {
    e.preventDefault();
    location.hash = withQuery("#/calls", formValues(filters));
  });
  const results = h("div");
  root.append(h("h1", {}, "Calls"), filters, results);

  const query = {
    status: params.status, direction: params.direction, sentiment: params.sentiment, number: params.number,
    from: params.from ? new Date(`${params.from}T00:00:00`).toISOString() : undefined,
    to: params.to ? new Date(`${params.to}T23:59:59.999`).toISOString() : undefined,
  };
  async function page(cursor) {
    const data = await api("GET", withQuery("/v1/calls", { ...query, cursor, limit: 50 }));
    results.querySelector(".more")?.remove();
    results.append(table(["Started", "From", "To", "Status", "Length", "Sentiment", "Summary"],
      data.items.map((c) => [
        h("a", { href: `#/calls/${c.id}` }, when(c.started_at)), c.from_number, c.to_number,
        badge(c.status), duration(c.duration_ms), badge(c.sentiment), c.summary || "",
      ]), cursor ? "" : "No calls match."));
    if (data.next_cursor) {
      results.append(h("button", { class: "secondary more", onclick: () => page(data.next_cursor) }, "More"));
    }
  }
  await page();
}

async function renderCall(root, id) {
  const call = await api("GET", `/v1/calls/${id}`);
  const { extracted, turns } = call;
  root.append(
    h("p", {}, h("a", { href: "#/calls" }, "← Calls")),
    h("h1", {}, `Call from ${call.from_number}`),
    h("div", { class: "grid" },
      h("section", { class: "card" }, h("h2", {}, "Call"), h("dl", { class: "kv" },
        kv("Status", badge(call.status)), kv("Direction", call.direction), kv("To", call.to_number),
        kv("Started", when(call.started_at)), kv("Length", duration(call.duration_ms)),
        kv("Ended by", call.end_reason || "—"), call.failure ? kv("Failure", call.failure) : null,
        kv("Conversation", call.conversation_id ? h("a", { href: `#/conversations/${call.conversation_id}` }, "Open") : "—"),
        kv("Lead", call.lead_id ? h("a", { href: `#/leads/${call.lead_id}` }, "Open") : "—"))),
      h("section", { class: "card" }, h("h2", {}, "Summary"),
        h("p", {}, call.summary || "No summary yet."), h("p", {}, "Sentiment: ", badge(call.sentiment)),
        h("h2", {}, "Extracted"),
        Object.keys(extracted).length
          ? h("dl", { class: "kv" }, Object.entries(extracted).map(([k, v]) => kv(k, typeof v === "string" ? v : JSON.stringify(v))))
          : h("p", { class: "empty" }, "Nothing extracted."))),
    h("section", { class: "card" }, h("h2", {}, "Transcript and latency"), legend(),
      table(["Who", "Said", "Voice to voice", "Stages"], turns.map((t) => [
        t.speaker, h("span", {}, t.text, t.interrupted ? h("em", { class: "muted" }, " (interrupted)") : null),
        t.timings.voice_to_voice_ms != null ? `${t.timings.voice_to_voice_ms} ms` : "",
        t.timings.voice_to_voice_ms != null ? latencyBar(t.timings) : "",
      ]), "Nothing was said.")));
}

function kv(key, value) {
  return [h("dt", {}, key), h("dd", {}, value)];
}

/** The colour key of the latency bars. */
export function legend() {
  return h("div", { class: "legend" }, STAGES.map(([, label, colour]) => {
    const swatch = h("i");
    swatch.style.background = colour;
    return h("span", {}, swatch, label);
  }));
}

/**
 * A bar of one turn's stages, each as wide as its share of what the caller waited: the
 * endpointing silence plus voice-to-voice (stages may overlap, so never less than their sum).
 */
export function latencyBar(timings) {
  const stages = STAGES.reduce((sum, [k]) => sum + (timings[k] || 0), 0);
  const total = Math.max((timings.endpointing_ms || 0) + (timings.voice_to_voice_ms || 0), stages, 1);
  const bar = h("div", { class: "bar", role: "img", "aria-label": STAGES
    .filter(([k]) => timings[k] != null).map(([k, label]) => `${label} ${timings[k]} ms`).join(", ") });
  for (const [key, label, colour] of STAGES) {
    if (timings[key] == null) continue;
    const part = h("span", { title: `${label}: ${timings[key]} ms` });
    part.style.width = `${(100 * timings[key]) / total}%`;
    part.style.background = colour;
    bar.append(part);
  }
  return bar;
}
