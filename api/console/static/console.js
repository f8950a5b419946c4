// The console: a small single-page app over the service's public API.
// The API key lives in this tab's sessionStorage only; it goes out in the
// Authorization header of the API calls and nowhere else.
import { series, timeline } from "./plot.js";

const KEY = "regsvc.apiKey";
const PAGE = 50;
const HISTORY_PAGE = 500; // the API's largest page
// Filtered feed calls per click when looking for a request id: each examines a
// bounded stretch of the log (the API's bound) and says where to read on.
const FEED_SEARCH_CALLS = 20;
const main = document.getElementById("main");
const session = { role: null };

// ---------------------------------------------------------------- the API

class ApiError extends Error {
  constructor(status, code, message, requestId) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
  }
}

async function api(path, { method = "GET", key = sessionStorage.getItem(KEY) } = {}) {
  const headers = { Accept: "application/json" };
  if (key) headers.Authorization = `Bearer ${key}`;
  let response;
  try {
    response = await fetch(path, { method, headers, cache: "no-store", credentials: "omit" });
  } catch (error) {
    throw new ApiError(0, "UNREACHABLE", `The service did not answer (${error.message}).`);
  }
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!response.ok) {
    const envelope = body && body.error;
    throw new ApiError(
      response.status,
      envelope ? envelope.code : `HTTP_${response.status}`,
      envelope ? envelope.message : `The service answered ${response.status}.`,
      envelope ? envelope.requestId : response.headers.get("X-Request-ID"),
    );
  }
  return body;
}

function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

const enc = encodeURIComponent;

// ---------------------------------------------------------------- DOM helpers

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function link(href, text) {
  return h("a", { href }, text);
}

function eventLink(id) {
  return link(`#/events/${enc(id)}`, id);
}

function userLink(id) {
  return link(`#/users/${enc(id)}`, id);
}

function time(iso) {
  return iso ? h("time", { datetime: iso }, iso.replace("T", " ")) : "";
}

// Loads a first page now and the next one on each click of ``more``: the button
// is disabled while a page loads, and a failure shows its message in ``status``.
function pageOnDemand(more, status, loadPage) {
  const load = async () => {
    more.disabled = true;
    try {
      await loadPage();
    } catch (error) {
      status.replaceChildren(errorBox(error));
    } finally {
      more.disabled = false;
    }
  };
  more.addEventListener("click", load);
  load();
}

function errorBox(error) {
  const box = h("div", { class: "error", role: "alert" });
  if (error instanceof ApiError) {
    box.append(h("strong", {}, error.message));
    box.append(
      h("span", { class: "meta" }, ` ${error.code}${error.status ? ` (${error.status})` : ""}`),
    );
    if (error.requestId) box.append(h("span", { class: "meta" }, ` request ${error.requestId}`));
  } else {
    box.append(h("strong", {}, "The console failed: "), String(error && error.message));
  }
  return box;
}

function table(caption, head, rows, attrs = {}) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      attrs,
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, head.map((name) => h("th", { scope: "col" }, name)))),
      h(
        "tbody",
        {},
        rows.length
          ? rows
          : h("tr", {}, h("td", { colspan: head.length, class: "empty" }, "None.")),
      ),
    ),
  );
}

function dl(pairs) {
  return h(
    "dl",
    { class: "details" },
    pairs.map(([name, value]) => [h("dt", {}, name), h("dd", {}, value ?? "—")]),
  );
}

function field(label, input) {
  return h("div", { class: "field" }, h("label", { for: input.id }, label), input);
}

function json(value) {
  return h("pre", { class: "payload" }, JSON.stringify(value, null, 2));
}

function page(title, ...content) {
  main.replaceChildren(h("h1", { id: "page-title" }, title), ...content);
  document.title = `${title} - Registration console`;
}

function busy(text = "Loading…") {
  return h("p", { class: "busy", role: "status" }, text);
}

// A region whose content an async load fills in (or replaces by the error).
async function fill(region, load) {
  region.replaceChildren(busy());
  region.setAttribute("aria-busy", "true");
  try {
    region.replaceChildren(...[await load()].flat());
  } catch (error) {
    region.replaceChildren(errorBox(error));
  } finally {
    region.removeAttribute("aria-busy");
  }
}

// ---------------------------------------------------------------- signing in

// Which role the key has, told by the public API itself: an auditor's key may
// read /audit, an admin's also /admin; a client's neither.
async function roleOf(key) {
  await api("/audit/log?limit=1", { key });
  try {
    await api("/admin/projections", { key });
    return "admin";
  } catch (error) {
    if (error.status === 403) return "auditor";
    throw error;
  }
}

function refusal(error) {
  if (error.status === 403) {
    return h(
      "div",
      { class: "error", role: "alert", id: "login-refused" },
      h("strong", {}, "This API key may not use the console."),
      h("p", {}, "The console is for keys with role auditor or admin. The service said: ", error.message),
    );
  }
  return errorBox(error);
}

function showLogin(problem) {
  for (const id of ["nav", "who", "sign-out"]) document.getElementById(id).hidden = true;
  const input = h("input", {
    id: "api-key",
    name: "apiKey",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
  });
  const message = h("div", { id: "login-message", "aria-live": "polite" }, problem || "");
  const form = h(
    "form",
    { class: "login", id: "login-form" },
    h("p", {}, "Enter an API key with role auditor or admin. It is kept in this tab only, until you sign out or close it."),
    field("API key", input),
    h("button", { type: "submit" }, "Sign in"),
    message,
  );
  form.addEventListener("submit", async (submitted) => {
    submitted.preventDefault();
    const key = input.value.trim();
    message.replaceChildren(busy("Checking the key…"));
    try {
      session.role = await roleOf(key);
    } catch (error) {
      message.replaceChildren(refusal(error));
      input.select();
      return;
    }
    sessionStorage.setItem(KEY, key);
    input.value = "";
    signedIn();
  });
  page("Sign in", form);
  input.focus();
}

function signedIn() {
  document.getElementById("nav").hidden = false;
  document.getElementById("nav-projections").hidden = session.role !== "admin";
  const who = document.getElementById("who");
  who.hidden = false;
  who.textContent = `role: ${session.role}`;
  document.getElementById("sign-out").hidden = false;
  route();
}

document.getElementById("sign-out").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  session.role = null;
  location.hash = "#/events";
  showLogin("Signed out.");
});

document.getElementById("user-jump").addEventListener("submit", (submitted) => {
  submitted.preventDefault();
  const input = document.getElementById("user-jump-id");
  location.hash = `#/users/${enc(input.value.trim())}`;
  input.value = "";
});

// ---------------------------------------------------------------- events

function eventsPage(params) {
  const idInput = h("input", { id: "event-search", name: "eventId", autocomplete: "off", required: true });
  const search = h(
    "form",
    { class: "inline", role: "search", id: "event-search-form" },
    field("Event id", idInput),
    h("button", { type: "submit" }, "Open event"),
  );
  search.addEventListener("submit", (submitted) => {
    submitted.preventDefault();
    location.hash = `#/events/${enc(idInput.value.trim())}`;
  });
  const status = h(
    "select",
    { id: "status-filter", name: "status" },
    ["", "draft", "published", "active", "cancelled", "completed"].map((value) =>
      h("option", { value, selected: params.get("status") === value }, value || "any"),
    ),
  );
  status.addEventListener("change", () => {
    location.hash = `#/events${query({ status: status.value })}`;
  });
  const region = h("div", { id: "events-list" });
  // nextToken of each page shown so far: back and forth without a second read of each.
  const tokens = [null];
  let at = 0;
  const load = () =>
    fill(region, async () => {
      const list = await api(
        `/events${query({ status: params.get("status"), limit: PAGE, nextToken: tokens[at] })}`,
      );
      tokens[at + 1] = list.nextToken;
      const rows = list.events.map((event) =>
        h(
          "tr",
          {},
          h("td", {}, eventLink(event.eventId)),
          h("td", {}, event.title),
          h("td", {}, event.date),
          h("td", {}, event.status),
          h("td", { class: "num" }, event.capacity),
          h("td", { class: "num" }, event.registeredCount),
          h("td", { class: "num" }, event.waitlistCount),
          h("td", { class: "num" }, event.availableSpots),
        ),
      );
      const pager = h(
        "div",
        { class: "pager" },
        h("button", { type: "button", disabled: at === 0, onclick: () => { at -= 1; load(); } }, "Previous page"),
        h("span", {}, `Page ${at + 1} · ${list.total} events`),
        h("button", { type: "button", disabled: !list.nextToken, onclick: () => { at += 1; load(); } }, "Next page"),
      );
      return [
        table(
          "Events",
          ["Event id", "Title", "Date", "Status", "Capacity", "Confirmed", "Waitlist", "Free"],
          rows,
          { id: "events-table" },
        ),
        pager,
      ];
    });
  page("Events", h("div", { class: "toolbar" }, search, field("Status", status)), region);
  load();
}

// The registrations of an event, confirmed then waitlisted, a page at a time.
function registrationLists(eventId) {
  const confirmed = h("tbody", {});
  const waiting = h("tbody", {});
  const more = h("button", { type: "button", id: "more-registrations", hidden: true }, "Load more registrations");
  const status = h("p", { class: "meta", role: "status" });
  let token = null;
  const section = h(
    "section",
    { "aria-labelledby": "registrations-title" },
    h("h2", { id: "registrations-title" }, "Registrations now"),
    h("div", { class: "two" },
      h("div", { class: "table-wrap" }, h("table", { id: "confirmed-table" },
        h("caption", {}, "Confirmed, in the order seats were taken"),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "#"), h("th", { scope: "col" }, "User"), h("th", { scope: "col" }, "Registered at"))),
        confirmed)),
      h("div", { class: "table-wrap" }, h("table", { id: "waitlist-table" },
        h("caption", {}, "Waitlist, first in line first"),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Position"), h("th", { scope: "col" }, "User"), h("th", { scope: "col" }, "Registered at"))),
        waiting))),
    status,
    more,
  );
  pageOnDemand(more, status, async () => {
    const list = await api(`/events/${enc(eventId)}/registrations${query({ limit: PAGE, nextToken: token })}`);
    for (const r of list.registrations) {
      if (r.status === "confirmed") {
        confirmed.append(h("tr", {}, h("td", { class: "num" }, confirmed.rows.length + 1), h("td", {}, userLink(r.userId)), h("td", {}, time(r.registeredAt))));
      } else {
        waiting.append(h("tr", {}, h("td", { class: "num" }, r.waitlistPosition), h("td", {}, userLink(r.userId)), h("td", {}, time(r.registeredAt))));
      }
    }
    token = list.nextToken;
    more.hidden = !token;
    status.textContent = `${confirmed.rows.length + waiting.rows.length} of ${list.total} registrations shown.`;
  });
  return section;
}

function eventDetails(event) {
  return dl([
    ["Event id", event.eventId],
    ["Title", event.title],
    ["Date", event.date],
    ["Status", event.status],
    ["Location", event.location],
    ["Organizer", event.organizer],
    ["Capacity", event.capacity],
    ["Confirmed", event.registeredCount],
    ["Waitlisted", event.waitlistCount],
    ["Free seats", event.availableSpots],
    ["Waitlist enabled", event.waitlistEnabled ? "yes" : "no"],
    ["Created", time(event.createdAt)],
    ["Updated", time(event.updatedAt)],
  ]);
}

function historyRow(entry) {
  return h(
    "tr",
    { id: `history-v${entry.version}` },
    h("td", { class: "num" }, entry.version),
    h("td", {}, time(entry.occurredAt)),
    h("td", {}, entry.type),
    h("td", {}, entry.data && entry.data.userId ? userLink(entry.data.userId) : ""),
    h("td", {}, entry.metadata.actor ?? ""),
    h("td", {}, entry.metadata.requestId ? link(`#/audit${query({ request: entry.metadata.requestId })}`, entry.metadata.requestId) : ""),
    h("td", { class: "num" }, entry.position != null ? link(`#/audit${query({ after: entry.position - 1, highlight: entry.position })}`, entry.position) : ""),
  );
}

const HISTORY_HEAD = ["Version", "Time", "Type", "User", "Actor", "Request id", "Position"];

function eventPage(eventId, params) {
  const travel = { version: params.get("version"), asOf: params.get("asOf") };
  const travelling = Boolean(travel.version || travel.asOf);
  const now = h("section", { id: "event-now", "aria-labelledby": "now-title" });
  const then = h("section", { id: "event-then", "aria-labelledby": "then-title", hidden: !travelling });
  const plotArea = h("div", { id: "plot" });
  const historyBody = h("tbody", {});
  const historyStatus = h("p", { class: "meta", role: "status", id: "history-status" });
  const moreHistory = h("button", { type: "button", id: "more-history", hidden: true }, "Load more history");
  const axis = h("select", { id: "plot-axis" }, h("option", { value: "time" }, "time"), h("option", { value: "order" }, "history order"));
  const entries = [];
  let token = null;

  const versionInput = h("input", { id: "travel-version", name: "version", type: "number", min: 1, step: 1, inputmode: "numeric", value: travel.version || "" });
  const slider = h("input", { id: "travel-slider", type: "range", min: 1, max: 1, step: 1, value: travel.version || 1 });
  const asOfInput = h("input", { id: "travel-asof", name: "asOf", placeholder: "2024-12-01T10:00:00.123456Z", autocomplete: "off", value: travel.asOf || "" });
  const travelForm = h(
    "form",
    { id: "travel-form", class: "travel" },
    h("fieldset", {},
      h("legend", {}, "Time travel: the event as it was"),
      field("Version (after this entry of its history)", versionInput),
      field("Version slider", slider),
      field("Or as of a time (ISO 8601, UTC)", asOfInput),
      h("div", { class: "buttons" },
        h("button", { type: "submit" }, "Show as it was"),
        h("button", { type: "button", id: "travel-now", onclick: () => { location.hash = `#/events/${enc(eventId)}`; } }, "Back to now"))),
  );
  slider.setAttribute("aria-label", "Version slider");
  slider.addEventListener("input", () => {
    versionInput.value = slider.value;
    const entry = entries.find((e) => String(e.version) === slider.value);
    asOfInput.value = "";
    asOfInput.placeholder = entry ? entry.occurredAt : asOfInput.placeholder;
  });
  versionInput.addEventListener("input", () => { if (versionInput.value) asOfInput.value = ""; });
  asOfInput.addEventListener("input", () => { if (asOfInput.value) versionInput.value = ""; });
  travelForm.addEventListener("submit", (submitted) => {
    submitted.preventDefault();
    const asOf = asOfInput.value.trim();
    location.hash = `#/events/${enc(eventId)}${query(asOf ? { asOf } : { version: versionInput.value || slider.value })}`;
  });

  const draw = () => {
    const at = travel.version ? Number(travel.version) : travel.asOf ? lastVersionAt(entries, travel.asOf) : null;
    plotArea.replaceChildren(timeline(series(entries), { axis: axis.value, at }));
  };
  axis.addEventListener("change", draw);
  // A point of the plot, clicked: the event as it was after that entry.
  plotArea.addEventListener("click", (clicked) => {
    const version = clicked.target.closest("circle")?.dataset.version;
    if (version) location.hash = `#/events/${enc(eventId)}${query({ version })}`;
  });

  const loadHistory = async () => {
    moreHistory.disabled = true;
    try {
      const page = await api(`/audit/events/${enc(eventId)}/history${query({ limit: HISTORY_PAGE, nextToken: token })}`);
      entries.push(...page.history);
      historyBody.append(...page.history.map(historyRow));
      token = page.nextToken;
      moreHistory.hidden = !token;
      historyStatus.textContent = token
        ? `The first ${entries.length} entries of the history are loaded (plot and table); more remain.`
        : `All ${entries.length} entries of the history are loaded.`;
      const last = entries[entries.length - 1];
      if (last) {
        slider.max = last.version;
        versionInput.max = last.version;
        slider.value = travel.version || last.version;
      }
      draw();
    } catch (error) {
      historyStatus.replaceChildren(errorBox(error));
    } finally {
      moreHistory.disabled = false;
    }
  };
  moreHistory.addEventListener("click", loadHistory);

  page(
    `Event ${eventId}`,
    now,
    h("section", { "aria-labelledby": "timeline-heading" },
      h("h2", { id: "timeline-heading" }, "Timeline"),
      h("div", { class: "toolbar" }, field("Horizontal axis", axis),
        h("ul", { class: "legend", "aria-label": "Legend" },
          h("li", { class: "confirmed" }, "confirmed"),
          h("li", { class: "waitlisted" }, "waitlisted"),
          h("li", { class: "capacity" }, "capacity (dashed; changes marked)"))),
      plotArea,
      travelForm,
      then),
    h("section", { "aria-labelledby": "history-title" },
      h("h2", { id: "history-title" }, "History"),
      h("div", { class: "table-wrap" }, h("table", { id: "history-table" },
        h("caption", {}, "Every domain event of the event, oldest first"),
        h("thead", {}, h("tr", {}, HISTORY_HEAD.map((name) => h("th", { scope: "col" }, name)))),
        historyBody)),
      historyStatus,
      moreHistory),
  );

  fill(now, async () => {
    const event = await api(`/events/${enc(eventId)}`);
    document.getElementById("page-title").textContent = `Event ${event.eventId}: ${event.title}`;
    return [h("h2", { id: "now-title" }, "Now"), eventDetails(event), registrationLists(eventId)];
  }).then(() => {
    // A deleted event has a history still: show it even when the event is gone.
    if (now.querySelector(".error")) now.prepend(h("h2", { id: "now-title" }, "Now"));
  });
  if (travelling) {
    fill(then, async () => {
      const state = await api(`/audit/events/${enc(eventId)}/state${query(travel.version ? { version: travel.version } : { asOf: travel.asOf })}`);
      const waitlist = state.waitlist.map((userId, i) => h("tr", {}, h("td", { class: "num" }, i + 1), h("td", {}, userLink(userId))));
      return [
        h("h2", { id: "then-title" }, travel.version ? `As it was at version ${travel.version}` : `As it was at ${travel.asOf}`),
        eventDetails(state),
        table("Waitlist then, first in line first", ["Position", "User"], waitlist, { id: "then-waitlist" }),
      ];
    }).then(() => {
      if (then.querySelector(".error")) then.prepend(h("h2", { id: "then-title" }, "As it was"));
      then.scrollIntoView({ block: "nearest" });
    });
  }
  loadHistory();
}

function lastVersionAt(entries, asOf) {
  const limit = Date.parse(asOf);
  let version = null;
  for (const entry of entries) if (Date.parse(entry.occurredAt) <= limit) version = entry.version;
  return version;
}

// ---------------------------------------------------------------- users

function userPage(userId) {
  const account = h("section", { "aria-labelledby": "account-title" });
  const registrations = h("section", { "aria-labelledby": "user-registrations-title" });
  const historyBody = h("tbody", {});
  const historyStatus = h("p", { class: "meta", role: "status" });
  const more = h("button", { type: "button", id: "more-user-history", hidden: true }, "Load more history");
  let token = null;
  let shown = 0;
  page(
    `User ${userId}`,
    account,
    registrations,
    h("section", { "aria-labelledby": "user-history-title" },
      h("h2", { id: "user-history-title" }, "History"),
      h("div", { class: "table-wrap" }, h("table", { id: "user-history-table" },
        h("caption", {}, "Every domain event about the user, in log order"),
        h("thead", {}, h("tr", {}, ["Position", "Time", "Type", "Event", "Actor", "Request id"].map((n) => h("th", { scope: "col" }, n)))),
        historyBody)),
      historyStatus,
      more),
  );
  fill(account, async () => {
    const user = await api(`/users/${enc(userId)}`);
    return [h("h2", { id: "account-title" }, "Account"), dl([["User id", user.userId], ["Name", user.erased ? "erased (personal data destroyed)" : user.name], ["Created", time(user.createdAt)], ["Updated", time(user.updatedAt)]])];
  });
  let regToken = null;
  const regBody = h("tbody", {});
  const regMore = h("button", { type: "button", hidden: true }, "Load more registrations");
  const loadRegistrations = async () => {
    const list = await api(`/users/${enc(userId)}/registrations${query({ limit: PAGE, nextToken: regToken })}`);
    regBody.append(...list.registrations.map((r) => h("tr", {},
      h("td", {}, eventLink(r.eventId)), h("td", {}, r.eventTitle), h("td", {}, r.eventDate),
      h("td", {}, r.status), h("td", { class: "num" }, r.waitlistPosition ?? ""), h("td", {}, time(r.registeredAt)))));
    regToken = list.nextToken;
    regMore.hidden = !regToken;
  };
  regMore.addEventListener("click", () => loadRegistrations().catch((error) => regMore.after(errorBox(error))));
  fill(registrations, async () => {
    await loadRegistrations();
    return [
      h("h2", { id: "user-registrations-title" }, "Registrations"),
      h("div", { class: "table-wrap" }, h("table", { id: "user-registrations" },
        h("caption", {}, "Every registration of the user"),
        h("thead", {}, h("tr", {}, ["Event", "Title", "Date", "Status", "Waitlist position", "Registered at"].map((n) => h("th", { scope: "col" }, n)))),
        regBody)),
      regMore,
    ];
  });
  pageOnDemand(more, historyStatus, async () => {
    const page = await api(`/audit/users/${enc(userId)}/history${query({ limit: HISTORY_PAGE, nextToken: token })}`);
    historyBody.append(...page.history.map((entry) => h("tr", {},
      h("td", { class: "num" }, entry.position != null ? link(`#/audit${query({ after: entry.position - 1, highlight: entry.position })}`, entry.position) : ""),
      h("td", {}, time(entry.occurredAt)),
      h("td", {}, entry.type),
      h("td", {}, entry.data && entry.data.eventId ? eventLink(entry.data.eventId) : ""),
      h("td", {}, entry.metadata.actor ?? ""),
      h("td", {}, entry.metadata.requestId ? link(`#/audit${query({ request: entry.metadata.requestId })}`, entry.metadata.requestId) : ""))));
    shown += page.history.length;
    token = page.nextToken;
    more.hidden = !token;
    historyStatus.textContent = token ? `The first ${shown} entries are shown; more remain.` : `All ${shown} entries are shown.`;
  });
}

// ---------------------------------------------------------------- audit trail

function auditEntry(entry, highlight, broken) {
  const position = entry.position;
  return h(
    "li",
    { class: position === highlight ? "entry highlight" : "entry", id: position != null ? `entry-${position}` : undefined, tabindex: position === highlight ? -1 : undefined },
    h("div", { class: "entry-head" },
      h("strong", {}, entry.type),
      h("span", {}, ` #${position ?? "?"} · `, time(entry.occurredAt))),
    position === highlight && broken ? h("p", { class: "broken-label" }, "The first broken link that verify found: ", broken) : null,
    dl([
      ["Actor", entry.metadata.actor],
      ["Request id", entry.metadata.requestId ? link(`#/audit${query({ request: entry.metadata.requestId })}`, entry.metadata.requestId) : null],
      ["Stream, version", `${entry.stream} v${entry.version}`],
      ["Hash", entry.metadata.hash],
    ]),
    entry.undecodable ? h("p", { class: "error" }, "This stored event cannot be decoded; raw: ", entry.raw) : null,
    h("div", { class: "payload-line" }, h("span", { class: "meta" }, "Payload "), h("code", { class: "payload" }, JSON.stringify(entry.data))),
  );
}

function auditPage(params) {
  const filters = { event: params.get("event") || "", user: params.get("user") || "", request: params.get("request") || "" };
  const after = Number(params.get("after") || 0);
  const highlight = params.get("highlight") ? Number(params.get("highlight")) : null;
  const inputs = {
    event: h("input", { id: "filter-event", name: "event", value: filters.event, autocomplete: "off" }),
    user: h("input", { id: "filter-user", name: "user", value: filters.user, autocomplete: "off" }),
    request: h("input", { id: "filter-request", name: "request", value: filters.request, autocomplete: "off" }),
  };
  const form = h("form", { class: "filters", id: "audit-filters", role: "search" },
    field("Event id", inputs.event), field("User id", inputs.user), field("Request id", inputs.request),
    h("div", { class: "buttons" },
      h("button", { type: "submit" }, "Apply filters"),
      h("button", { type: "button", onclick: () => { location.hash = "#/audit"; } }, "Clear")));
  form.addEventListener("submit", (submitted) => {
    submitted.preventDefault();
    location.hash = `#/audit${query({ event: inputs.event.value.trim(), user: inputs.user.value.trim(), request: inputs.request.value.trim() })}`;
  });
  const verifyResult = h("div", { id: "verify-result", "aria-live": "polite" });
  const verifyButton = h("button", { type: "button", id: "verify" }, "Verify the hash chains");
  verifyButton.addEventListener("click", async () => {
    verifyButton.disabled = true;
    verifyResult.replaceChildren(busy("Verifying every stream's chain…"));
    try {
      const report = await api("/audit/verify");
      const broken = report.firstBroken;
      verifyResult.replaceChildren(h("div", { class: report.ok ? "ok" : "error", role: "status" },
        h("strong", {}, report.ok ? "Verified: every chain holds." : "Broken: the log was altered."),
        dl([["Events checked", report.checked], ["Unsealed", report.unsealed], ["Digest", h("code", {}, report.digest)]]),
        broken ? h("p", {}, `First broken link: position ${broken.position}, stream ${broken.stream} v${broken.version}: ${broken.reason}. `,
          link(`#/audit${query({ after: broken.position - 1, highlight: broken.position, broken: broken.reason })}`, `Open entry ${broken.position}`)) : null));
    } catch (error) {
      verifyResult.replaceChildren(errorBox(error));
    } finally {
      verifyButton.disabled = false;
    }
  });
  const list = h("ol", { class: "entries", id: "audit-entries" });
  const status = h("p", { class: "meta", role: "status", id: "audit-status" });
  const more = h("button", { type: "button", id: "audit-more", hidden: true }, "More");
  page("Audit trail", h("section", { class: "verify" }, verifyButton, verifyResult), form, status, list, more);

  const keep = (entry) =>
    (!filters.request || entry.metadata.requestId === filters.request) &&
    (!filters.user || !filters.event || (entry.data && entry.data.userId === filters.user));
  let scanned = 0;
  let shown = 0;
  let next = null;
  let source;
  if (filters.event || filters.user) {
    // The history of one event (or one user) is the API's own filter.
    const path = filters.event ? `/audit/events/${enc(filters.event)}/history` : `/audit/users/${enc(filters.user)}/history`;
    source = async () => {
      const page = await api(`${path}${query({ limit: HISTORY_PAGE, nextToken: next })}`);
      next = page.nextToken;
      return page.history;
    };
  } else {
    // A request id is the API's own filter too (GET /audit/log?requestId=).
    next = after;
    source = async () => {
      const page = await api(`/audit/log${query({ requestId: filters.request, after: next, limit: PAGE })}`);
      next = page.next;
      return page.entries;
    };
  }
  const searching = filters.request && !filters.event && !filters.user;
  pageOnDemand(more, status, async () => {
    status.replaceChildren(busy());
    // The filtered feed may answer with nothing found yet and where to read
    // on: it is followed a bounded number of calls per click.
    let calls = 0;
    const found = [];
    do {
      const entries = await source();
      scanned += entries.length;
      found.push(...entries.filter(keep));
      calls += 1;
    } while (next != null && searching && !found.length && calls < FEED_SEARCH_CALLS);
    list.append(...found.map((entry) => auditEntry(entry, highlight, params.get("broken"))));
    shown += found.length;
    more.hidden = next == null;
    more.textContent = searching ? "Search further" : "Next entries";
    const where = filters.event ? `event ${filters.event}` : filters.user ? `user ${filters.user}` : "the feed";
    status.textContent = searching
      ? `${shown} entries of request ${filters.request} found, ${next == null ? "the whole feed searched" : `the feed searched up to position ${next}`}.`
      : `${shown} entries shown of ${scanned} read from ${where}${next == null ? " (to its end)" : ""}.`;
    const target = highlight != null && document.getElementById(`entry-${highlight}`);
    if (target) target.focus();
  });
}

// ---------------------------------------------------------------- projections (admins)

function projectionsPage() {
  if (session.role !== "admin") {
    page("Projections", h("p", { class: "error", role: "alert" }, "Projections are for keys with role admin; this key has role ", session.role, "."));
    return;
  }
  const region = h("div", { id: "projections" });
  const progress = h("div", { id: "rebuild-progress", "aria-live": "polite" });
  const drift = h("div", { id: "drift-result", "aria-live": "polite" });
  let polling = null;

  const render = (projections) =>
    table("Projections of the log", ["Name", "State", "Position", "Head", "Lag (events)", "Lag (s)", "Progress", "Actions"],
      projections.map((p) => h("tr", { "data-name": p.name },
        h("td", {}, p.name),
        h("td", { class: `state ${p.state}` }, p.state, p.error ? `: ${p.error}` : "", p.resume ? ` (${p.resume})` : ""),
        h("td", { class: "num" }, p.position),
        h("td", { class: "num" }, p.head),
        h("td", { class: "num" }, p.lag),
        h("td", { class: "num" }, p.lagSeconds.toFixed(3)),
        h("td", {}, p.progress != null ? `${Math.round(p.progress * 100)}%` : ""),
        h("td", {}, h("div", { class: "actions" },
          h("button", { type: "button", class: "rebuild", disabled: p.state === "rebuilding", onclick: () => rebuild(p.name) }, `Rebuild ${p.name}`),
          h("button", { type: "button", class: "check", onclick: () => check(p.name) }, `Check ${p.name} for drift`))))),
      { id: "projections-table" });

  const refresh = async () => {
    const { projections } = await api("/admin/projections");
    region.replaceChildren(render(projections));
    return projections;
  };

  const watch = (name) => {
    clearInterval(polling);
    const bar = h("progress", { id: "rebuild-bar", max: 1, value: 0, "aria-label": `Rebuild of ${name}` });
    const text = h("span", { id: "rebuild-text" }, "Rebuilding…");
    progress.replaceChildren(h("div", { class: "progress" }, bar, text));
    const tick = async () => {
      try {
        const projection = (await refresh()).find((p) => p.name === name);
        if (!projection) return;
        if (projection.state === "rebuilding") {
          bar.value = projection.progress ?? 0;
          text.textContent = `Rebuilding ${name}: ${Math.round((projection.progress ?? 0) * 100)}%`;
          return;
        }
        clearInterval(polling);
        bar.value = 1;
        text.textContent = projection.state === "live"
          ? `Rebuild of ${name} finished: live at position ${projection.position}.`
          : `Rebuild of ${name} stopped: ${projection.state}${projection.error ? ` (${projection.error})` : ""}.`;
        progress.firstChild.classList.add(projection.state === "live" ? "done" : "failed");
      } catch (error) {
        clearInterval(polling);
        progress.replaceChildren(errorBox(error));
      }
    };
    polling = setInterval(tick, 300);
    window.addEventListener("hashchange", () => clearInterval(polling), { once: true });
    tick();
  };

  const rebuild = async (name) => {
    try {
      await api(`/admin/projections/${enc(name)}/rebuild`, { method: "POST" });
    } catch (error) {
      progress.replaceChildren(errorBox(error));
      if (error.code !== "REBUILD_IN_PROGRESS") return;
    }
    watch(name);
  };

  const check = async (name) => {
    drift.replaceChildren(busy(`Comparing ${name} with a fresh fold of the log…`));
    try {
      const report = await api(`/admin/projections/${enc(name)}/check`);
      const rows = report.differences.map((d) => h("tr", {}, h("td", {}, d.table), h("td", {}, d.key),
        h("td", { class: "differs" }, differingFields(d.live, d.expected)), h("td", {}, json(d.live)), h("td", {}, json(d.expected))));
      const count = `${report.differences.length}${report.truncated ? "+" : ""} difference${report.differences.length === 1 ? "" : "s"}`;
      drift.replaceChildren(h("div", { class: report.ok ? "ok" : "error", role: "status" },
        h("strong", {}, report.ok ? `No drift: ${report.rows} rows match the log at position ${report.position}.` : `${count} at position ${report.position} (${report.rows} rows compared).`)),
        report.ok ? "" : table("Differences", ["Table", "Key", "Differs in", "Live", "Expected"], rows, { id: "drift-table" }));
    } catch (error) {
      drift.replaceChildren(errorBox(error));
    }
  };

  page("Projections",
    h("div", { class: "toolbar" }, h("button", { type: "button", id: "refresh-projections", onclick: () => fill(region, async () => render((await api("/admin/projections")).projections)) }, "Refresh")),
    region, progress, h("h2", {}, "Drift check"), drift);
  fill(region, async () => {
    const { projections } = await api("/admin/projections");
    const running = projections.find((p) => p.state === "rebuilding");
    if (running) setTimeout(() => watch(running.name));
    return render(projections);
  });
}

// The fields of two rows that differ (a missing row: "the whole row").
function differingFields(live, expected) {
  if (!live || !expected) return live ? "row not expected" : "row missing";
  const names = new Set([...Object.keys(live), ...Object.keys(expected)]);
  return [...names].filter((name) => JSON.stringify(live[name]) !== JSON.stringify(expected[name])).join(", ");
}

// ---------------------------------------------------------------- routing

function route() {
  if (!session.role) return;
  const [path, search] = (location.hash.slice(1) || "/events").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(search || "");
  const section = parts[0] || "events";
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.section === section) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  if (section === "events" && parts[1]) eventPage(parts[1], params);
  else if (section === "events") eventsPage(params);
  else if (section === "users" && parts[1]) userPage(parts[1]);
  else if (section === "audit") auditPage(params);
  else if (section === "projections") projectionsPage();
  else page("Not found", h("p", {}, "No such page. ", link("#/events", "Go to the events.")));
  main.focus({ preventScroll: true });
}

window.addEventListener("hashchange", route);
// The skip link moves the focus itself: its #main would be taken for a page.
document.querySelector(".skip").addEventListener("click", (clicked) => {
  clicked.preventDefault();
  main.focus();
});

async function start() {
  const key = sessionStorage.getItem(KEY);
  if (!key) {
    showLogin();
    return;
  }
  try {
    session.role = await roleOf(key);
  } catch (error) {
    // A key the service no longer accepts is forgotten; an unreachable service is not its fault.
    if (error.status === 401 || error.status === 403) sessionStorage.removeItem(KEY);
    showLogin(refusal(error));
    return;
  }
  signedIn();
}

start();
