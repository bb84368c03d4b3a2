// Analytics: calls per day, latency percentiles by stage, the sentiment mix, the lead funnel
// and this month's usage against the quota. Charts are drawn by the vendored uPlot.
import { api, duration, field, formValues, h, table, withQuery } from "./core.js";
import { STAGES } from "./calls.js";

/** Renders the Analytics screen for the chosen days (default: the last seven). */
export async function render(root, params) {
  const range = h("form", { class: "card row", "aria-label": "Days" },
    field("From", h("input", { type: "date", name: "from", value: params.from || "" })),
    field("To", h("input", { type: "date", name: "to", value: params.to || "" })),
    h("button", { type: "submit" }, "Show"));
  range.addEventListener("submit", (e) => {
    e.preventDefault();
    location.hash = withQuery("#/analytics", formValues(range));
  });
  const [summary, usage] = await Promise.all([
    api("GET", withQuery("/v1/analytics/summary", { from: params.from, to: params.to })),
    api("GET", "/v1/usage"),
  ]);
  const t = summary;
  const perDay = h("div", { class: "chart", role: "img", "aria-label": "Calls per day" });
  root.append(h("h1", {}, "Analytics"), range,
    h("div", { class: "grid" },
      h("section", { class: "card" }, h("h2", {}, "Calls"), h("dl", { class: "kv" },
        h("dt", {}, "Calls"), h("dd", {}, String(t.calls)),
        h("dt", {}, "Answered"), h("dd", {}, String(t.answered)),
        h("dt", {}, "Voice to voice p50 / p95"), h("dd", {}, `${ms(t.voice_to_voice_ms.p50)} / ${ms(t.voice_to_voice_ms.p95)}`),
        h("dt", {}, "Length p50 / p95"), h("dd", {}, `${duration(t.duration_ms.p50)} / ${duration(t.duration_ms.p95)}`))),
      usageCard(usage)),
    h("section", { class: "card" }, h("h2", {}, "Calls per day"), perDay,
      h("p", { class: "muted" }, "Blue: all calls. Green: answered.")),
    h("div", { class: "grid" },
      h("section", { class: "card" }, h("h2", {}, "Latency by stage"),
        table(["Stage", "p50", "p95"], STAGES.concat([["voice_to_voice_ms", "Voice to voice"]])
          .filter(([k]) => summary.stages[k])
          .map(([k, label]) => [label, ms(summary.stages[k].p50), ms(summary.stages[k].p95)]), "No replies yet.")),
      h("section", { class: "card" }, h("h2", {}, "Sentiment"), bars(summary.sentiment)),
      h("section", { class: "card" }, h("h2", {}, "Lead funnel"),
        bars(summary.lead_funnel, ["new", "contacted", "qualified", "appointment", "won", "lost"]))));
  drawPerDay(perDay, summary.buckets);
  return undefined;
}

function ms(value) {
  return value === null || value === undefined ? "—" : `${value} ms`;
}

/** Horizontal bars of counts, in `order` when given. */
function bars(counts, order = Object.keys(counts)) {
  const max = Math.max(1, ...Object.values(counts));
  const rows = order.map((k) => {
    const meter = h("span");
    meter.style.width = `${(100 * (counts[k] || 0)) / max}%`;
    return [k, h("div", { class: "meter", role: "img", "aria-label": `${k}: ${counts[k] || 0}` }, meter), String(counts[k] || 0)];
  });
  return table(["", "", "Count"], rows, "None yet.");
}

function usageCard(usage) {
  const quota = usage.monthly_minute_quota;
  const meter = h("span");
  meter.style.width = quota ? `${Math.min(100, (100 * usage.call_minutes) / quota)}%` : "0";
  return h("section", { class: "card" }, h("h2", {}, `Usage in ${usage.month}`),
    h("p", {}, quota ? `${usage.call_minutes} of ${quota} call minutes` : `${usage.call_minutes} call minutes (no quota)`),
    quota ? h("div", { class: "meter", role: "meter", "aria-valuemin": 0, "aria-valuemax": quota, "aria-valuenow": usage.call_minutes, "aria-label": "Minutes used" }, meter) : null,
    h("dl", { class: "kv" },
      h("dt", {}, "Speech recognised"), h("dd", {}, `${usage.stt_seconds} s`),
      h("dt", {}, "LLM tokens"), h("dd", {}, String(usage.llm_tokens)),
      h("dt", {}, "TTS characters"), h("dd", {}, String(usage.tts_characters)),
      h("dt", {}, "SMS segments"), h("dd", {}, String(usage.sms_segments)),
      h("dt", {}, "Concurrent calls allowed"), h("dd", {}, String(usage.concurrent_call_limit))));
}

function drawPerDay(el, buckets) {
  if (!window.uPlot) {
    el.replaceWith(h("p", { class: "empty" }, "The chart library did not load."));
    return;
  }
  const xs = buckets.map((b) => Date.parse(b.start) / 1000);
  const width = Math.max(280, Math.min(1100, el.parentElement.clientWidth - 30));
  const chart = new window.uPlot({
    width, height: 220,
    scales: { x: { time: true } },
    legend: { show: false },
    series: [{}, { label: "Calls", stroke: "#2456d6", fill: "rgba(36,86,214,.15)" },
      { label: "Answered", stroke: "#1d7a46" }],
    axes: [{ splits: () => xs, values: (_, ticks) => ticks.map((t) => new Date(t * 1000).toLocaleDateString(undefined, { month: "short", day: "numeric" })) },
      { label: "calls" }],
  }, [xs, buckets.map((b) => b.calls), buckets.map((b) => b.answered)], el);
  window.addEventListener("hashchange", () => chart.destroy(), { once: true });
}
