// Knowledge: upload documents with progress, watch each become ready (or fail with its
// reason), delete them, and try a search to see what the agent would find.
import { api, badge, busy, can, field, h, session, subscribe, table, toast, when } from "./core.js";

/** Renders the Knowledge screen; returns the cleanup that closes the event stream. */
export async function render(root) {
  const documents = h("div", { id: "documents" });
  root.append(h("h1", {}, "Knowledge"));
  if (can("admin")) root.append(uploadForm(() => load()));
  root.append(documents, searchForm());

  async function load() {
    const data = await api("GET", "/v1/knowledge/documents");
    const items = data.items || data;
    documents.replaceChildren(h("h2", {}, "Documents"), table(["Name", "Status", "Progress", "Chunks", "Uploaded", ""],
      items.map((d) => [
        d.name,
        h("span", {}, badge(d.status), d.failure_reason ? h("small", { class: "muted" }, ` ${d.failure_reason}`) : null),
        h("progress", { max: 1, value: d.progress, "aria-label": `${d.name} progress` }),
        String(d.chunk_count), when(d.created_at),
        can("admin") ? h("button", {
          class: "secondary",
          "aria-label": `Delete ${d.name}`,
          onclick: (e) => busy(e.target, async () => {
            if (!confirm(`Delete ${d.name} and everything learnt from it?`)) return;
            await api("DELETE", `/v1/knowledge/documents/${d.id}`);
            await load();
          }),
        }, "Delete") : "",
      ]), "No documents yet. Upload a PDF, Word file, web page, Markdown or text."));
  }
  await load();
  return subscribe("document.status", () => load());
}

function uploadForm(done) {
  const file = h("input", { type: "file", name: "file", required: true, accept: ".pdf,.docx,.txt,.md,.html,.htm" });
  const progress = h("progress", { max: 1, value: 0, hidden: true, "aria-label": "Upload progress" });
  const form = h("form", { class: "card", "aria-label": "Upload a document" },
    h("h2", {}, "Upload"), field("Document", file), progress, h("button", { type: "submit" }, "Upload"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const button = form.querySelector("button");
    button.disabled = true;
    progress.hidden = false;
    // A cheap authenticated call first, so an expired access token is refreshed before the upload.
    api("GET", "/v1/me")
      .then(() => upload(file.files[0], (share) => { progress.value = share; }))
      .then(() => { toast("Uploaded; reading it now."); form.reset(); done(); })
      .catch((err) => toast(err.message, "error"))
      .finally(() => { button.disabled = false; progress.hidden = true; progress.value = 0; });
  });
  return form;
}

/** Sends one file with upload progress (fetch cannot report it; XMLHttpRequest can). */
function upload(file, onProgress) {
  return new Promise((resolve, reject) => {
    const body = new FormData();
    body.append("file", file, file.name);
    const request = new XMLHttpRequest();
    request.open("POST", "/v1/knowledge/documents");
    request.setRequestHeader("authorization", `Bearer ${session().access_token}`);
    request.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    request.onload = () => {
      if (request.status < 300) return resolve(JSON.parse(request.responseText));
      let problem = null;
      try { problem = JSON.parse(request.responseText); } catch { /* not JSON */ }
      return reject(new Error(problem?.detail || problem?.title || `Upload failed (${request.status}).`));
    };
    request.onerror = () => reject(new Error("Upload failed: the connection dropped."));
    request.send(body);
  });
}

function searchForm() {
  const query = h("input", { name: "query", type: "search", required: true, placeholder: "What would a caller ask?" });
  const results = h("div");
  const form = h("form", { class: "card", role: "search", "aria-label": "Test retrieval" },
    h("h2", {}, "Try a search"), h("div", { class: "row" }, field("Question", query), h("button", { type: "submit" }, "Search")), results);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(form.querySelector("button"), async () => {
      const data = await api("POST", "/v1/knowledge/search", { query: query.value, k: 5 });
      const hits = data.items || data.results || data;
      results.replaceChildren(table(["Score", "Source", "Text"], hits.map((hit) => [
        hit.score.toFixed(3), `${hit.title} · ${hit.location}`, hit.text]), "Nothing found."));
    });
  });
  return form;
}
