// The timeline of an event: confirmed and waitlisted counts after each entry
// of its history (oldest first), capacity as a dashed step line, each capacity
// change marked. Drawn as inline SVG; every point carries its values in data-*
// attributes, so what is drawn can be checked against the history it came from.

const SVG = "http://www.w3.org/2000/svg";

// How each stored domain event of an event's stream moves its counts.
const MOVES = {
  SeatTaken: [1, 0],
  SeatReleased: [-1, 0],
  WaitlistJoined: [0, 1],
  WaitlistLeft: [0, -1],
  PromotedFromWaitlist: [1, -1],
};

/** The counts after each entry: [{version, time, type, confirmed, waitlisted, capacity}]. */
export function series(entries) {
  let confirmed = 0;
  let waitlisted = 0;
  let capacity = 0;
  return entries.map((entry) => {
    const move = MOVES[entry.type];
    if (move) {
      confirmed += move[0];
      waitlisted += move[1];
    }
    if (entry.type === "GatheringCreated" || entry.type === "CapacityChanged") {
      capacity = Number(entry.data.capacity);
    }
    return {
      version: entry.version,
      time: entry.occurredAt,
      type: entry.type,
      confirmed,
      waitlisted,
      capacity,
    };
  });
}

function node(name, attrs = {}, text) {
  const el = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  if (text !== undefined) el.textContent = text;
  return el;
}

function niceTicks(max) {
  const step = Math.max(1, Math.ceil(max / 5));
  const ticks = [];
  for (let value = 0; value <= max; value += step) ticks.push(value);
  return ticks;
}

function shortTime(iso) {
  return iso ? iso.replace("T", " ").replace(/(\.\d{3})\d*Z$/, "$1Z") : "";
}

/**
 * The plot of ``points`` (from ``series``) as an <svg> element.
 * options.axis: "time" (x by occurredAt) or "order" (x by version);
 * options.at: a version to mark (time travel), or null.
 */
export function timeline(points, options = {}) {
  const width = 960;
  const height = 320;
  const pad = { left: 48, right: 16, top: 28, bottom: 44 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const svg = node("svg", {
    viewBox: `0 0 ${width} ${height}`,
    class: "timeline",
    role: "img",
    "aria-labelledby": "timeline-title timeline-desc",
    "data-points": points.length,
  });
  const last = points[points.length - 1];
  svg.append(node("title", { id: "timeline-title" }, "Confirmed and waitlisted over time"));
  svg.append(
    node(
      "desc",
      { id: "timeline-desc" },
      last
        ? `${points.length} history entries; at the last one ${last.confirmed} confirmed, ` +
            `${last.waitlisted} waitlisted, capacity ${last.capacity}.`
        : "No history.",
    ),
  );
  if (!points.length) return svg;

  const times = points.map((p) => Date.parse(p.time));
  const byTime = options.axis !== "order" && times[times.length - 1] > times[0];
  const xs = points.map((p, i) => {
    if (byTime) return pad.left + ((times[i] - times[0]) / (times[times.length - 1] - times[0])) * plotW;
    const span = Math.max(1, points.length - 1);
    return pad.left + (points.length === 1 ? plotW / 2 : (i / span) * plotW);
  });
  const top = Math.max(1, ...points.map((p) => Math.max(p.confirmed, p.waitlisted, p.capacity)));
  const y = (value) => pad.top + (1 - value / top) * plotH;

  const axes = node("g", { class: "axes" });
  for (const tick of niceTicks(top)) {
    axes.append(node("line", { x1: pad.left, x2: width - pad.right, y1: y(tick), y2: y(tick), class: "grid" }));
    axes.append(node("text", { x: pad.left - 8, y: y(tick) + 4, class: "tick", "text-anchor": "end" }, tick));
  }
  const xLabel = byTime ? "time (UTC)" : "history entry (version)";
  const first = byTime ? shortTime(points[0].time) : `v${points[0].version}`;
  const end = byTime ? shortTime(last.time) : `v${last.version}`;
  axes.append(node("text", { x: pad.left, y: height - 22, class: "tick" }, first));
  axes.append(node("text", { x: width - pad.right, y: height - 22, class: "tick", "text-anchor": "end" }, end));
  axes.append(node("text", { x: pad.left + plotW / 2, y: height - 6, class: "axis-label", "text-anchor": "middle" }, xLabel));
  svg.append(axes);

  // Capacity changes: a dashed line where each took effect, labelled.
  const marks = node("g", { class: "capacity-changes" });
  points.forEach((p, i) => {
    if (p.type !== "CapacityChanged") return;
    const mark = node("g", { class: "capacity-change", "data-version": p.version, "data-capacity": p.capacity });
    mark.append(node("line", { x1: xs[i], x2: xs[i], y1: pad.top, y2: pad.top + plotH }));
    mark.append(node("text", { x: xs[i] + 4, y: pad.top - 8 }, `capacity ${p.capacity}`));
    mark.append(node("title", {}, `v${p.version} ${shortTime(p.time)}: capacity changed to ${p.capacity}`));
    marks.append(mark);
  });
  svg.append(marks);

  const step = (key) => {
    let d = "";
    points.forEach((p, i) => {
      const px = xs[i].toFixed(1);
      const py = y(p[key]).toFixed(1);
      d += i === 0 ? `M${px},${py}` : `H${px}V${py}`;
    });
    return d;
  };
  svg.append(node("path", { d: step("capacity"), class: "line capacity" }));
  svg.append(node("path", { d: step("waitlisted"), class: "line waitlisted" }));
  svg.append(node("path", { d: step("confirmed"), class: "line confirmed" }));

  for (const key of ["confirmed", "waitlisted"]) {
    const group = node("g", { class: `points ${key}` });
    points.forEach((p, i) => {
      const later = options.at != null && p.version > options.at;
      const dot = node("circle", {
        cx: xs[i].toFixed(1),
        cy: y(p[key]).toFixed(1),
        r: 3.5,
        class: later ? "point later" : "point",
        "data-version": p.version,
        "data-value": p[key],
        "data-time": p.time,
      });
      dot.append(node("title", {}, `v${p.version} ${p.type} ${shortTime(p.time)}: ${p[key]} ${key}`));
      group.append(dot);
    });
    svg.append(group);
  }

  if (options.at != null) {
    const index = points.findLastIndex((p) => p.version <= options.at);
    if (index >= 0) {
      svg.append(node("line", { x1: xs[index], x2: xs[index], y1: pad.top, y2: pad.top + plotH, class: "travel-marker", "data-version": options.at }));
    }
  }
  return svg;
}
