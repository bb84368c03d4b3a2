// Team: the tenant's users and their roles, invitations and removals (owners and admins).
import { api, badge, busy, field, formValues, h, session, table, toast } from "./core.js";

const ROLES = ["owner", "admin", "agent", "viewer"];

/** Renders the Team screen. */
export async function render(root) {
  const users = await api("GET", "/v1/users");
  const me = session().user;
  root.append(h("h1", {}, "Team"),
    table(["Name", "Email", "Role", "Status", ""], users.items.map((u) => {
      const role = h("select", { "aria-label": `Role of ${u.email}`, disabled: u.id === me.id }, ROLES.map((r) =>
        h("option", { value: r, selected: r === u.role }, r)));
      role.addEventListener("change", () => busy(role, async () => {
        await api("PATCH", `/v1/users/${u.id}`, { role: role.value });
        toast(`${u.email} is now ${role.value}.`);
      }));
      return [u.name || "—", u.email, role, badge(u.active ? "active" : "invited", u.active ? "ready" : "queued"),
        u.id === me.id ? h("span", { class: "muted" }, "you") : h("button", {
          class: "secondary",
          "aria-label": `Remove ${u.email}`,
          onclick: (e) => busy(e.target, async () => {
            if (!confirm(`Remove ${u.email} from the team?`)) return;
            await api("DELETE", `/v1/users/${u.id}`);
            location.reload();
          }),
        }, "Remove")];
    })));
  const invite = h("form", { class: "card row", "aria-label": "Invite someone" },
    field("Email", h("input", { name: "email", type: "email", required: true })),
    field("Name", h("input", { name: "name", required: true })),
    field("Role", h("select", { name: "role" }, ROLES.map((r) => h("option", { value: r, selected: r === "agent" }, r)))),
    h("button", { type: "submit" }, "Invite"));
  invite.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(invite.querySelector("button"), async () => {
      await api("POST", "/v1/users", formValues(invite));
      toast("Invited: they get a link to set their password.");
      location.reload();
    });
  });
  root.append(h("h2", {}, "Invite someone"), invite);
  return undefined;
}
