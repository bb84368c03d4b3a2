// Agents and numbers: edit what each agent says and may do, check its {{variables}}, and
// choose which agent answers each phone number. Owners and admins edit; others read.
import { api, busy, can, field, formValues, h, table, toast } from "./core.js";

const TOOLS = ["search_knowledge", "transfer_to_human", "end_call", "update_lead", "send_sms", "schedule_callback"];

/** Renders the agent list with the numbers, or one agent's editor when the route has an id. */
export async function render(root, params) {
  if (params.id) return renderAgent(root, params.id);
  const [agents, numbers] = await Promise.all([api("GET", "/v1/agents"), api("GET", "/v1/phone-numbers")]);
  const write = can("admin");
  root.append(h("h1", {}, "Agents"),
    table(["Agent", "Model", "Voice", "Tools"], agents.items.map((a) => [
      h("a", { href: `#/agents/${a.id}` }, a.name), a.llm_model, a.voice, a.enabled_tools.join(", ") || "—"]),
    "No agents yet."));
  if (write) {
    const create = h("form", { class: "row card", "aria-label": "New agent" },
      field("New agent's name", h("input", { name: "name", required: true, maxlength: 100 })),
      h("button", { type: "submit" }, "Create agent"));
    create.addEventListener("submit", (e) => {
      e.preventDefault();
      busy(create.querySelector("button"), async () => {
        const agent = await api("POST", "/v1/agents", formValues(create));
        location.hash = `#/agents/${agent.id}`;
      });
    });
    root.append(create);
  }
  root.append(h("h2", {}, "Phone numbers"), numbersTable(numbers.items, agents.items, write));
  if (write && agents.items.length) root.append(newNumberForm(agents.items));
  return undefined;
}

function agentSelect(agents, selected, attrs = {}) {
  return h("select", { name: "agent_id", ...attrs }, agents.map((a) => h("option", { value: a.id, selected: a.id === selected }, a.name)));
}

function numbersTable(numbers, agents, write) {
  return table(["Number", "Label", "Answered by", ""], numbers.map((n) => {
    const select = agentSelect(agents, n.agent_id, { disabled: !write, "aria-label": `Agent for ${n.number}` });
    select.addEventListener("change", () => busy(select, async () => {
      await api("PATCH", `/v1/phone-numbers/${n.id}`, { agent_id: select.value });
      toast(`${n.number} now goes to ${select.selectedOptions[0].textContent}.`);
    }));
    return [n.number, n.label || "—", select, write ? h("button", {
      class: "secondary",
      "aria-label": `Remove ${n.number}`,
      onclick: (e) => busy(e.target, async () => {
        if (!confirm(`Stop answering ${n.number}?`)) return;
        await api("DELETE", `/v1/phone-numbers/${n.id}`);
        location.reload();
      }),
    }, "Remove") : ""];
  }), "No numbers yet.");
}

function newNumberForm(agents) {
  const form = h("form", { class: "row card", "aria-label": "Add a number" },
    field("Number", h("input", { name: "number", required: true, placeholder: "+15551230000" })),
    field("Label", h("input", { name: "label" })),
    field("Agent", agentSelect(agents)),
    h("button", { type: "submit" }, "Add number"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(form.querySelector("button"), async () => {
      await api("POST", "/v1/phone-numbers", formValues(form));
      location.reload();
    });
  });
  return form;
}

async function renderAgent(root, id) {
  const agent = await api("GET", `/v1/agents/${id}`);
  const write = can("admin");
  const text = (name, value, attrs = {}) => h("input", { name, value: value ?? "", disabled: !write, ...attrs });
  const area = (name, value) => h("textarea", { name, disabled: !write, rows: 8 }, value ?? "");
  const check = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "card", "aria-label": "Agent settings" },
    h("div", { class: "row" },
      field("Name", text("name", agent.name, { required: true })),
      field("Language", text("language", agent.language)),
      field("Voice", text("voice", agent.voice)),
      field("Model", text("llm_model", agent.llm_model)),
      field("Fallback models", text("llm_fallback_models", agent.llm_fallback_models.join(", ")), "Comma-separated, tried in order."),
      field("Speech recognition", h("select", { name: "stt_mode", disabled: !write },
        ["streaming", "utterance"].map((m) => h("option", { value: m, selected: m === agent.stt_mode }, m)))),
      field("Transfer number", text("transfer_number", agent.transfer_number, { placeholder: "+15551230000" }))),
    field("System prompt", area("system_prompt", agent.system_prompt), "Use {{customer_name}}, {{tenant_name}}, {{local_time}} and lead fields."),
    field("First message", area("first_message", agent.first_message)),
    h("fieldset", {}, h("legend", {}, "Tools"), TOOLS.map((t) => h("label", { class: "check" },
      h("input", { type: "checkbox", name: `tool:${t}`, checked: agent.enabled_tools.includes(t), disabled: !write }), ` ${t} `))),
    h("div", { class: "row" },
      h("label", { class: "check" }, h("input", { type: "checkbox", name: "auto_retrieval", checked: agent.auto_retrieval, disabled: !write }), " Search knowledge before each reply"),
      field("Search budget (ms)", text("retrieval_budget_ms", agent.retrieval_budget_ms, { type: "number", min: 0, max: 2000 }))),
    field("Post-call analysis schema (JSON)", area("analysis_schema", JSON.stringify(agent.analysis_schema, null, 2))),
    h("div", { class: "row" },
      write ? h("button", { type: "submit" }, "Save") : null,
      h("button", { type: "button", class: "secondary", onclick: (e) => busy(e.target, () => showVariables(id, check)) }, "Check variables")),
    check);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(form.querySelector("button[type=submit]"), async () => {
      await api("PATCH", `/v1/agents/${id}`, fieldsOf(form));
      toast("Saved.");
      await showVariables(id, check);
    });
  });
  root.append(h("p", {}, h("a", { href: "#/agents" }, "← Agents and numbers")), h("h1", {}, agent.name), form);
  return undefined;
}

/** The PATCH body of the agent form; a schema that is not JSON is refused before sending. */
function fieldsOf(form) {
  const v = formValues(form);
  let schema;
  try {
    schema = JSON.parse(v.analysis_schema || "{}");
  } catch {
    throw new Error("The post-call analysis schema is not valid JSON.");
  }
  return {
    name: v.name, language: v.language, voice: v.voice, llm_model: v.llm_model, stt_mode: v.stt_mode,
    system_prompt: v.system_prompt, first_message: v.first_message,
    llm_fallback_models: v.llm_fallback_models.split(",").map((s) => s.trim()).filter(Boolean),
    transfer_number: v.transfer_number.trim() || null,
    enabled_tools: TOOLS.filter((t) => v[`tool:${t}`]),
    auto_retrieval: Boolean(v.auto_retrieval),
    retrieval_budget_ms: Number(v.retrieval_budget_ms),
    analysis_schema: schema,
  };
}

async function showVariables(id, box) {
  const report = await api("POST", `/v1/agents/${id}/validate`);
  box.replaceChildren(report.unknown.length
    ? h("p", { role: "alert" }, `Unknown variables, filled with nothing: ${report.unknown.map((v) => `{{${v}}}`).join(", ")}`)
    : h("p", { class: "muted" }, report.variables.length
      ? `All variables are known: ${report.variables.map((v) => `{{${v}}}`).join(", ")}`
      : "The prompts use no variables."));
}
