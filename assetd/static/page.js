// The asset browser: a virtualised grid/list over /api/assets, kept live by the feed.
"use strict";
(() => {
  const FIRST_PAGE = 300;
  const PAGE = 1000;
  const MARGIN_ROWS = 4; // rows drawn above and below the visible ones
  const FRAME_BUDGET_MS = 8; // feed changes applied per animation frame, at most this long
  const params = new URLSearchParams(location.search);
  // Beyond this many queued changes, listing afresh is cheaper than catching up.
  const FAR_BEHIND = Number(params.get("far_behind")) || 20000;
  const $ = (id) => document.getElementById(id);
  const numbers = new Intl.NumberFormat();
  const dates = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

  // -- the token ------------------------------------------------------------------

  const auth = { token: params.get("token") || sessionStorage.getItem("assetd.token") || "", asking: null };
  if (params.get("token")) sessionStorage.setItem("assetd.token", auth.token);

  function withToken(url) {
    return auth.token ? url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(auth.token) : url;
  }

  function askToken(refused) {
    if (auth.asking) return auth.asking;
    $("login-why").textContent = refused
      ? "That token was refused. Paste the token from the daemon's token_file."
      : "Paste the token from the daemon's token_file.";
    $("login").hidden = false;
    $("login-token").value = "";
    $("login-token").focus();
    auth.asking = new Promise((resolve) => {
      $("login-form").onsubmit = (e) => {
        e.preventDefault();
        auth.token = $("login-token").value.trim();
        sessionStorage.setItem("assetd.token", auth.token);
        $("login").hidden = true;
        auth.asking = null;
        resolve();
      };
    });
    return auth.asking;
  }

  async function api(url) {
    for (;;) {
      const res = await fetch(withToken(url));
      if (res.status === 401) {
        await askToken(Boolean(auth.token));
        continue;
      }
      const body = await res.json().catch(() => ({}));
      if (!res.ok) {
        const err = new Error(body.error || res.status + " " + res.statusText);
        err.status = res.status;
        throw err;
      }
      return body;
    }
  }

  // -- formatting -------------------------------------------------------------------

  function humanBytes(n, unitOf = n) {
    const units = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    while (unitOf >= 1000 && i < units.length - 1) { unitOf /= 1000; i++; }
    const v = n / 1000 ** i;
    return (i ? v.toFixed(1) : String(n)) + " " + units[i];
  }

  function fileName(path) { return path.slice(path.lastIndexOf("/") + 1); }
  function folderOf(path) { return path.slice(0, path.lastIndexOf("/")) || "/"; }
  function key(loc) { return loc.path_bytes_b64 || loc.path; }
  function dateOf(loc) { return loc.mtime_ns ? dates.format(new Date(loc.mtime_ns / 1e6)) : ""; }
  function target(loc) { return loc.path_bytes_b64 ? { path_bytes_b64: loc.path_bytes_b64 } : { path: loc.path }; }
  function pathQuery(loc) {
    return loc.path_bytes_b64 ? "path_bytes_b64=" + encodeURIComponent(loc.path_bytes_b64) : "path=" + encodeURIComponent(loc.path);
  }

  const THUMBABLE = /^image\/(png|jpeg|webp|gif|bmp|tiff)$/;
  function thumbUrl(loc, size) {
    if (loc.is_missing || !THUMBABLE.test(loc.mime_type || "")) return null;
    return withToken("/api/thumb?" + pathQuery(loc) + "&size=" + size);
  }

  const KINDS = [
    ["model", /\.(safetensors|ckpt|pt|pt2|pth|bin|pkl|sft|gguf|onnx)$/i],
    ["image", /\.(png|jpe?g|webp|gif|bmp|tiff?|svg|avif|heic)$/i],
    ["video", /\.(mp4|webm|mov|mkv|avi)$/i],
    ["audio", /\.(wav|mp3|flac|ogg|m4a)$/i],
    ["config", /\.(ya?ml|toml|ini|cfg)$/i],
    ["archive", /\.(zip|tar|gz|xz|zst|7z|rar)$/i],
    ["text", /\.(txt|md|json|csv|py|js|log)$/i],
  ];
  function icon(loc) {
    const name = fileName(loc.path);
    const kind = (KINDS.find(([, re]) => re.test(name)) || ["other"])[0];
    const dot = name.lastIndexOf(".");
    const el = document.createElement("div");
    const ext = dot > 0 ? name.slice(dot + 1, dot + 12) : "file";
    el.className = "icon k-" + kind + (ext.length > 5 ? " long" : "");
    el.textContent = ext;
    el.setAttribute("aria-hidden", "true");
    return el;
  }

  function media(loc, size) {
    const url = thumbUrl(loc, size);
    if (!url) return icon(loc);
    const img = document.createElement("img");
    img.loading = "lazy";
    img.decoding = "async";
    img.alt = fileName(loc.path);
    img.src = url;
    img.onerror = () => img.replaceWith(icon(loc)); // not an image after all, or no thumbnails here
    return img;
  }

  // -- the view's model: the loaded part of the list, in the server's order --------------

  const view = {
    items: [], // loaded Locations, sorted as the server sorts them
    byKey: new Map(),
    next: null, // the cursor of the page after the loaded ones
    gen: 0, // bumped when the list is replaced: a reply for an older list is dropped
    fetching: false,
    mode: localStorage.getItem("assetd.view") === "list" ? "list" : "grid",
    selected: null, // the key of the asset in the preview
    focus: -1,
    unseen: 0, // new entries that match but fall outside the loaded range
    status: null,
  };
  const rendered = new Map(); // key -> element, only entries in or near the viewport

  function filters() {
    return {
      q: $("q").value.trim(), root: $("root").value, tag: $("tag").value.trim(),
      missing: $("missing").value, sort: $("sort").value, order: $("order").dataset.order,
    };
  }
  let current = filters();

  function listUrl(after, limit) {
    const f = current;
    const p = new URLSearchParams({ limit: String(limit) });
    if (f.root) p.set("root", f.root);
    if (f.tag) p.set("tag", f.tag);
    if (f.q) p.set("q", f.q);
    if (f.missing === "show") p.set("include_missing", "true");
    if (f.missing === "only") p.set("missing_only", "true");
    if (f.sort !== "path" || f.order !== "asc") { p.set("sort", f.sort); p.set("order", f.order); }
    if (after) p.set("after", after);
    return "/api/assets?" + p;
  }

  // The server's filters, on one Location.
  function matches(loc) {
    const f = current;
    if (f.root && loc.root !== f.root) return false;
    if (f.tag && !(loc.tags || []).includes(f.tag)) return false;
    if (f.missing === "hide" && loc.is_missing) return false;
    if (f.missing === "only" && !loc.is_missing) return false;
    if (f.q && !fileName(loc.path).toLowerCase().includes(f.q.toLowerCase())) return false;
    return true;
  }

  // The server's order by the sort value alone (its ties go by location id, which only it knows).
  function compare(a, b) {
    const s = current.sort;
    let d;
    if (s === "mtime") d = (a.mtime_ns || 0) - (b.mtime_ns || 0);
    else if (s === "size") d = (a.size || 0) - (b.size || 0);
    else {
      const x = s === "name" ? fileName(a.path) : a.path;
      const y = s === "name" ? fileName(b.path) : b.path;
      d = x < y ? -1 : x > y ? 1 : 0;
    }
    return current.order === "desc" ? -d : d;
  }

  // Whether ``existing`` stays before ``fresh`` (a new location: the highest id, so among
  // equal sort values it comes last ascending, first descending).
  function before(existing, fresh) {
    const d = compare(existing, fresh);
    return current.order === "desc" ? d < 0 : d <= 0;
  }

  function insertionIndex(fresh) {
    let lo = 0, hi = view.items.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (before(view.items[mid], fresh)) lo = mid + 1; else hi = mid;
    }
    return lo;
  }

  function replaceList(items, next) {
    view.items = items;
    view.byKey = new Map(items.map((loc) => [key(loc), loc]));
    view.next = next;
    view.unseen = 0;
    view.focus = -1;
    for (const el of rendered.values()) el.remove();
    rendered.clear();
    $("scroller").scrollTop = 0;
  }

  // One frame's worth of feed changes, applied to the model together: removals and
  // insertions are merged into the list once, and only entries on screen are redrawn.
  class Batch {
    constructor() { this.dead = new Set(); this.fresh = new Set(); this.dirty = new Set(); this.arrival = 0; }

    remove(k) {
      const cur = view.byKey.get(k);
      if (!cur) return;
      view.byKey.delete(k);
      if (this.fresh.has(cur)) this.fresh.delete(cur); else this.dead.add(cur);
    }

    upsert(loc) {
      const k = key(loc);
      const cur = view.byKey.get(k);
      if (cur && compare(cur, loc) === 0) {
        for (const name of Object.keys(cur)) if (!(name in loc)) delete cur[name];
        Object.assign(cur, loc); // in place: its index and its element stay
        this.dirty.add(k);
        return;
      }
      if (cur) this.remove(k); // its sort value changed: it moves
      const last = view.items[view.items.length - 1];
      if (view.next !== null && last && before(last, loc)) {
        // Beyond the loaded pages: paging brings it, when the user scrolls that far.
        view.unseen++;
        return;
      }
      const copy = { ...loc };
      copy._arrival = this.arrival++;
      view.byKey.set(k, copy);
      this.fresh.add(copy);
    }

    commit() {
      if (this.dead.size || this.fresh.size) {
        const scroller = $("scroller");
        const g = geometry();
        const firstIndex = Math.floor(scroller.scrollTop / g.rowH) * g.cols;
        const anchor = scroller.scrollTop > 0 ? view.items[firstIndex] : undefined;
        let items = this.dead.size ? view.items.filter((x) => !this.dead.has(x)) : view.items;
        if (this.fresh.size) items = merge(items, [...this.fresh]);
        view.items = items;
        if (anchor && !this.dead.has(anchor)) {
          // Keep what the user looks at where it is: entries above it push the scroll down.
          const now = items.indexOf(anchor);
          const rows = Math.floor(now / g.cols) - Math.floor(firstIndex / g.cols);
          if (rows) scroller.scrollTop += rows * g.rowH;
          let above = 0;
          for (const loc of this.fresh) if (before(loc, anchor)) above++;
          view.unseen += above; // not in sight: "N new — show" lists afresh from the top
        }
        for (const loc of this.dead) {
          const el = rendered.get(key(loc));
          if (el && el._loc === loc) { el.remove(); rendered.delete(key(loc)); }
        }
        render();
      } else {
        for (const k of this.dirty) {
          const el = rendered.get(k);
          if (el) fill(el, el._loc);
        }
      }
    }
  }

  function merge(items, fresh) {
    const desc = current.order === "desc";
    fresh.sort((a, b) => compare(a, b) || (desc ? b._arrival - a._arrival : a._arrival - b._arrival));
    const out = new Array(items.length + fresh.length);
    let i = 0, j = 0, o = 0;
    while (i < items.length && j < fresh.length) out[o++] = before(items[i], fresh[j]) ? items[i++] : fresh[j++];
    while (i < items.length) out[o++] = items[i++];
    while (j < fresh.length) out[o++] = fresh[j++];
    return out;
  }

  // -- drawing: only the rows in the viewport, plus a margin ---------------------------

  function geometry() {
    const width = $("spacer").clientWidth || $("scroller").clientWidth;
    if (view.mode === "list") return { cols: 1, rowH: 44, colW: width };
    const cols = Math.max(1, Math.floor(width / 176));
    return { cols, rowH: 232, colW: Math.floor(width / cols) };
  }

  // How many entries the list has: the loaded ones, or the roots' count when it is known.
  function knownTotal() {
    const f = current;
    if (!view.next) return view.items.length;
    if (!view.status || f.q || f.tag) return null;
    let n = 0;
    for (const r of view.status.roots || []) {
      if (f.root && r.name !== f.root) continue;
      n += (f.missing === "only" ? 0 : r.files || 0) + (f.missing === "hide" ? 0 : r.missing || 0);
    }
    return Math.max(n, view.items.length);
  }

  let renderScheduled = false;
  function scheduleRender() {
    if (renderScheduled) return;
    renderScheduled = true;
    requestAnimationFrame(() => { renderScheduled = false; render(); });
  }

  function render() {
    const scroller = $("scroller"), spacer = $("spacer");
    const g = geometry();
    if (spacer._colW !== g.colW) { spacer.style.setProperty("--tile-w", g.colW + "px"); spacer._colW = g.colW; }
    const total = knownTotal();
    const extent = Math.max(view.items.length, total || 0) + (view.next && total === null ? g.cols * 2 : 0);
    const height = Math.ceil(extent / g.cols) * g.rowH;
    if (spacer._height !== height) { spacer.style.height = height + "px"; spacer._height = height; }
    const top = scroller.scrollTop, h = scroller.clientHeight;
    const firstRow = Math.max(0, Math.floor(top / g.rowH) - MARGIN_ROWS);
    const lastRow = Math.ceil((top + h) / g.rowH) + MARGIN_ROWS;
    const from = firstRow * g.cols, to = Math.min(view.items.length, lastRow * g.cols);
    const keep = new Set();
    for (let i = from; i < to; i++) {
      const loc = view.items[i];
      const k = key(loc);
      let el = rendered.get(k);
      if (!el || el._loc !== loc) {
        if (el) el.remove();
        el = build(loc);
        rendered.set(k, el);
        spacer.append(el);
      }
      el._index = i;
      const x = (i % g.cols) * g.colW, y = Math.floor(i / g.cols) * g.rowH;
      const pos = x + "," + y;
      if (el._pos !== pos) { el.style.transform = `translate(${x}px, ${y}px)`; el._pos = pos; }
      keep.add(k);
    }
    for (const [k, el] of rendered) {
      if (keep.has(k)) continue;
      const focused = el === document.activeElement;
      el.remove();
      rendered.delete(k);
      if (focused) scroller.focus({ preventScroll: true }); // the keys keep working
    }
    $("empty").hidden = view.items.length > 0 || Boolean(view.next) || view.fetching;
    $("loading").hidden = !view.fetching;
    showCount(total);
    if (view.next && !view.fetching && lastRow * g.cols >= view.items.length - g.cols * MARGIN_ROWS) loadMore();
  }

  function showCount(total) {
    const n = view.items.length;
    $("count").textContent = view.next
      ? numbers.format(n) + " loaded of " + (total !== null ? numbers.format(total) : "more") + " files"
      : numbers.format(n) + (n === 1 ? " file" : " files");
    $("news").hidden = view.unseen === 0;
    $("news").textContent = numbers.format(view.unseen) + " new — show";
  }

  function build(loc) {
    const el = document.createElement("div");
    el.className = "entry";
    el.tabIndex = 0;
    el.setAttribute("role", "button");
    fill(el, loc);
    return el;
  }

  // An entry's content from its Location (again when the location changes).
  function fill(el, loc) {
    el._loc = loc;
    const k = key(loc);
    el.dataset.key = k;
    el.dataset.path = loc.path;
    el.classList.toggle("missing", Boolean(loc.is_missing));
    el.classList.toggle("selected", view.selected === k);
    el.setAttribute("aria-label", fileName(loc.path) + (loc.is_missing ? " (missing)" : ""));
    const look = [loc.hash, loc.is_missing, loc.mime_type].join("|");
    let thumb = el.querySelector(".thumb");
    if (!thumb || el._look !== look) {
      const t = document.createElement("div");
      t.className = "thumb";
      t.append(media(loc, 256));
      if (thumb) thumb.replaceWith(t); else el.prepend(t);
      thumb = t;
      el._look = look;
    }
    let info = el.querySelector(".info");
    if (!info) { info = document.createElement("div"); info.className = "info"; el.append(info); }
    const name = span("name", fileName(loc.path));
    name.title = loc.path;
    if (loc.is_missing) name.append(badge("missing"));
    else if (loc.needs_verify && !loc.hash) name.append(badge("hashing", "pending"));
    const sub = span("sub", loc.root + " · " + humanBytes(loc.size || 0) + " · " + dateOf(loc));
    info.replaceChildren(name, sub, span("root", loc.root), span("size", humanBytes(loc.size || 0)),
      span("date", dateOf(loc)), tagChips(loc, true));
  }

  function span(cls, text) { const s = document.createElement("span"); s.className = cls; s.textContent = text; return s; }
  function badge(text, cls) { const b = span("badge" + (cls ? " " + cls : ""), text); return b; }

  // Tags of a location: the user's (removable), then the automatic ones (not removable).
  function tagChips(loc, editable) {
    const box = document.createElement("div");
    box.className = "tags";
    const mine = new Set(loc.user_tags || []);
    for (const t of loc.user_tags || []) box.append(chip(loc, t, editable));
    if (editable) {
      for (const t of loc.tags || []) if (!mine.has(t)) box.append(chip(loc, t, false));
      const add = document.createElement("button");
      add.type = "button"; add.className = "tag-add-btn row-actions"; add.textContent = "+ tag";
      add.setAttribute("aria-label", "add a tag to " + fileName(loc.path));
      add.onclick = (e) => { e.stopPropagation(); inlineTagInput(add, loc); };
      box.append(add);
    }
    return box;
  }

  function chip(loc, t, removable) {
    const c = span(removable ? "tag user" : "tag auto", t);
    c.dataset.tag = t;
    if (removable) {
      const x = document.createElement("button");
      x.type = "button"; x.className = "tag-remove"; x.textContent = "×";
      x.setAttribute("aria-label", "remove tag " + t);
      x.onclick = (e) => { e.stopPropagation(); changeTags(loc, [], [t]); };
      c.append(x);
    } else {
      c.title = "automatic tag";
    }
    return c;
  }

  function inlineTagInput(button, loc) {
    const input = document.createElement("input");
    input.className = "tag-inline"; input.placeholder = "new tag"; input.setAttribute("aria-label", "new tag");
    button.replaceWith(input);
    input.focus();
    input.onclick = (e) => e.stopPropagation();
    input.onkeydown = (e) => {
      e.stopPropagation();
      if (e.key === "Enter" && input.value.trim()) changeTags(loc, [input.value.trim()], []);
      if (e.key === "Enter" || e.key === "Escape") input.replaceWith(button);
    };
  }

  // -- paging ----------------------------------------------------------------------

  async function loadMore() {
    if (view.fetching || !view.next) return;
    const gen = view.gen;
    view.fetching = true;
    try {
      const page = await api(listUrl(view.next, PAGE));
      if (gen !== view.gen) return;
      const add = page.items.filter((loc) => !view.byKey.has(key(loc)));
      for (const loc of add) view.byKey.set(key(loc), loc);
      view.items = view.items.concat(add);
      view.next = page.next;
    } catch (e) {
      if (gen === view.gen) { toast("Could not load more: " + e.message); view.next = null; }
    } finally {
      if (gen === view.gen) { view.fetching = false; scheduleRender(); scheduleApply(); }
    }
  }

  // The list from its first page, for the filters now set (the feed's changes wait meanwhile).
  async function relist() {
    current = filters();
    const gen = ++view.gen;
    view.fetching = true;
    replaceList([], null);
    render();
    try {
      const page = await api(listUrl(null, FIRST_PAGE));
      if (gen !== view.gen) return;
      replaceList(page.items, page.next);
      fillTagList();
    } catch (e) {
      if (gen === view.gen) toast(e.message);
    } finally {
      if (gen === view.gen) { view.fetching = false; render(); scheduleApply(); }
    }
  }

  // -- the feed ------------------------------------------------------------------------

  const feed = {
    ws: null, applied: null, queue: [], head: 0, behind: false, afresh: 0, reqId: 0,
    pending: new Map(), retry: 500, opened: false,
  };
  window.assetdPage = { feed, view }; // for the benchmark and tests: how far the page is

  function setSeq(seq) {
    feed.applied = seq;
    document.body.dataset.seq = String(seq);
  }

  function request(cmd, args) {
    return new Promise((resolve, reject) => {
      if (!feed.ws || feed.ws.readyState !== WebSocket.OPEN) return reject(new Error("not connected"));
      const id = ++feed.reqId;
      feed.pending.set(id, { resolve, reject });
      feed.ws.send(JSON.stringify({ id, cmd, ...args }));
    });
  }

  async function changeTags(loc, add, remove) {
    try { await request("tag", { ...target(loc), add, remove }); }
    catch (e) { toast("Could not change tags: " + e.message); }
  }

  function onChange(msg) {
    if (feed.applied !== null && msg.seq <= feed.applied) return; // replayed, or before a fresh list
    feed.queue.push(msg);
    if (feed.behind) return; // kept until the fresh list's seq says whether it has them
    if (feed.queue.length - feed.head > FAR_BEHIND) listAfresh(null);
    else scheduleApply();
  }

  let applyScheduled = false;
  function scheduleApply() {
    if (applyScheduled) return;
    applyScheduled = true;
    requestAnimationFrame(applyFrame);
  }

  function applyFrame() {
    applyScheduled = false;
    if (view.fetching || feed.behind) return; // the list is being replaced: apply after
    const deadline = performance.now() + FRAME_BUDGET_MS;
    const batch = new Batch();
    let last = null;
    let n = 0;
    while (feed.head < feed.queue.length) {
      const msg = feed.queue[feed.head++];
      if (msg.seq > feed.applied) { applyChange(msg, batch); last = msg.seq; }
      if (++n % 64 === 0 && performance.now() > deadline) break;
    }
    if (feed.head > 4096 || feed.head === feed.queue.length) { feed.queue = feed.queue.slice(feed.head); feed.head = 0; }
    batch.commit();
    if (last !== null) setSeq(last);
    if (view.selected && batch.selected) showPreviewLocation(batch.selected);
    if (feed.queue.length) scheduleApply();
    else if (last !== null) refreshStatusSoon();
  }

  function applyChange(msg, batch) {
    const loc = msg.location;
    const k = key(loc);
    if (msg.old_path !== undefined) batch.remove(msg.old_path_bytes_b64 || msg.old_path);
    if (msg.op === "removed" || !matches(loc)) batch.remove(k);
    else batch.upsert(loc);
    if (k === view.selected) batch.selected = msg.op === "removed" ? null : loc;
  }

  // Far behind, or told the log no longer reaches back: list afresh from the server's seq.
  async function listAfresh(seq) {
    if (feed.behind) return;
    feed.behind = true;
    feed.afresh++;
    feed.queue = []; feed.head = 0;
    try {
      if (seq === null) {
        const st = await api("/api/assets/seed/status");
        showStatus(st);
        seq = st.seq;
      }
      setSeq(seq);
      feed.behind = false; // changes after seq queue up while the list loads
      await relist();
    } catch (e) {
      feed.behind = false;
      toast("Could not list afresh: " + e.message);
    }
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(withToken(scheme + "//" + location.host + "/ws"));
    feed.ws = ws;
    feed.opened = false;
    ws.onopen = () => { feed.opened = true; };
    ws.onmessage = (event) => {
      const msg = JSON.parse(event.data);
      switch (msg.type) {
        case "change": onChange(msg); break;
        case "hello": onHello(msg); break;
        case "result": {
          const p = feed.pending.get(msg.id);
          if (!p) return;
          feed.pending.delete(msg.id);
          if (msg.ok) p.resolve(msg.result); else p.reject(new Error(msg.error.message));
          break;
        }
        case "resync-required": listAfresh(msg.seq); break;
        case "root": refreshStatusSoon(); break;
        default:
          if (msg.type && msg.type.startsWith("assets.seed.")) showProgress(msg.type, msg.data);
      }
    };
    ws.onclose = async () => {
      $("conn").textContent = "reconnecting…";
      $("conn").className = "";
      for (const p of feed.pending.values()) p.reject(new Error("connection lost"));
      feed.pending.clear();
      if (!feed.opened) {
        // A refused handshake looks like any other failure here: ask over HTTP why.
        try { await api("/api/assets/seed/status"); } catch { /* the daemon is down */ }
      }
      setTimeout(connect, feed.retry);
      feed.retry = Math.min(feed.retry * 2, 5000);
    };
  }

  async function onHello(msg) {
    $("conn").textContent = "live";
    $("conn").className = "live";
    feed.retry = 500;
    if (feed.applied === null) {
      setSeq(msg.seq);
      await relist();
    }
    try {
      await request("subscribe", { since: feed.applied });
    } catch { /* the connection dropped again: onclose reconnects */ }
    refreshStatusSoon();
  }

  // -- the status line ---------------------------------------------------------------

  let statusTimer = null;
  function refreshStatusSoon() {
    if (statusTimer) return;
    statusTimer = setTimeout(async () => {
      statusTimer = null;
      try { showStatus(await api("/api/assets/seed/status")); } catch { /* shown on the next one */ }
    }, 2000);
  }

  function showStatus(st) {
    view.status = st;
    const select = $("root");
    const chosen = select.value;
    const names = (st.roots || []).map((r) => r.name + (r.online ? "" : " (offline)"));
    const now = [...select.options].slice(1).map((o) => o.textContent);
    if (names.join("\n") !== now.join("\n")) {
      select.replaceChildren(new Option("all roots", ""), ...(st.roots || []).map((r, i) => new Option(names[i], r.name)));
      select.value = chosen;
    }
    if (st.progress) showProgress(st.state === "IDLE" ? "assets.seed.completed" : "assets.seed.progress", st.progress);
    scheduleRender();
  }

  function rootFiles() {
    return ((view.status && view.status.roots) || []).reduce((n, r) => n + (r.files || 0), 0);
  }

  function showProgress(kind, p) {
    const bar = $("progress-bar");
    const text = $("progress-text");
    const f = (n) => numbers.format(n || 0);
    const files = (n) => f(n) + (n === 1 ? " file" : " files");
    if (kind === "assets.seed.progress" || kind === "assets.seed.started") {
      if (p.phase === "hashing") {
        const total = p.to_hash_bytes || 0;
        text.textContent = `hashing ${humanBytes(p.hashed_bytes || 0, total).replace(/ \w+$/, "")} of ${humanBytes(total)}` +
          ` (${f(p.hashed)} of ${files(p.to_hash)})`;
        bar.max = Math.max(total, 1); bar.value = p.hashed_bytes || 0;
      } else {
        const estimate = rootFiles();
        text.textContent = estimate > (p.scanned || 0)
          ? `registering ${f(p.scanned)} of ~${files(estimate)}`
          : `registering ${files(p.scanned)}`;
        bar.max = Math.max(estimate, p.scanned || 0, 1); bar.value = p.scanned || 0;
      }
      bar.hidden = false;
      return;
    }
    bar.hidden = true;
    const known = rootFiles() || p.scanned || 0;
    if (kind === "assets.seed.completed") {
      text.textContent = p.to_hash
        ? `up to date: ${files(known)}, ${f(p.hashed)} hashed (${humanBytes(p.hashed_bytes || 0)})`
        : `up to date: ${files(known)}, nothing to hash`;
    } else if (kind === "assets.seed.cancelled") {
      text.textContent = `pass cancelled after ${files(p.scanned)}`;
    } else if (kind === "assets.seed.error") {
      text.textContent = "pass failed" + (p.message ? ": " + p.message : "");
    }
    if (kind !== "assets.seed.error") refreshStatusSoon();
  }

  // -- the preview -------------------------------------------------------------------

  function select(loc) {
    const k = key(loc);
    const old = rendered.get(view.selected);
    if (old) old.classList.remove("selected");
    view.selected = k;
    const el = rendered.get(k);
    if (el) el.classList.add("selected");
    $("preview").hidden = false;
    $("pv-media").replaceChildren(media(loc, 1024));
    $("pv-media")._look = [loc.hash, loc.is_missing].join("|");
    showPreviewLocation(loc);
    $("pv-locations").replaceChildren();
    $("pv-generation").hidden = true;
    $("pv-meta-section").hidden = true;
    loadDetails(loc);
    scheduleRender();
  }

  async function loadDetails(loc) {
    const k = key(loc);
    let detail;
    try { detail = await api("/api/location?" + pathQuery(loc)); }
    catch { detail = { locations: [loc], metadata: null, generation: null }; }
    if (view.selected !== k) return;
    const list = $("pv-locations");
    list.replaceChildren(...(detail.locations || [loc]).map((other) => {
      const li = document.createElement("li");
      li.textContent = other.path;
      if (other.is_missing) { li.className = "missing"; li.append(badge("missing")); }
      return li;
    }));
    const meta = detail.metadata || {};
    $("pv-meta-section").hidden = Object.keys(meta).length === 0;
    $("pv-meta").replaceChildren(...Object.entries(meta).flatMap(([name, value]) =>
      fact(name, typeof value === "string" ? value : JSON.stringify(value))));
    const gen = detail.generation;
    $("pv-generation").hidden = !gen;
    if (gen) {
      $("pv-models").replaceChildren(...(gen.models || []).map((m) => {
        const li = document.createElement("li");
        li.textContent = m.name + (m.category ? " (" + m.category + ")" : "");
        return li;
      }));
      $("pv-prompt").textContent = gen.prompt || "";
      $("pv-prompt").hidden = !gen.prompt;
    }
  }

  function fact(name, value) {
    const dt = document.createElement("dt"); dt.textContent = name;
    const dd = document.createElement("dd"); dd.textContent = value;
    return [dt, dd];
  }

  // The preview's parts that follow the feed: tags, state, facts.
  function showPreviewLocation(loc) {
    $("preview")._loc = loc;
    $("pv-name").textContent = fileName(loc.path);
    const look = [loc.hash, loc.is_missing].join("|");
    if ($("pv-media")._look !== look) { $("pv-media").replaceChildren(media(loc, 1024)); $("pv-media")._look = look; }
    const badges = [];
    if (loc.is_missing) badges.push(badge("missing"));
    if (loc.needs_verify && !loc.hash) badges.push(badge("hashing", "pending"));
    $("pv-badges").replaceChildren(...badges);
    const content = withToken("/api/content?" + pathQuery(loc));
    for (const id of ["pv-open", "pv-download"]) {
      $(id).href = content;
      $(id).hidden = Boolean(loc.is_missing);
    }
    $("pv-facts").replaceChildren(
      ...fact("folder", folderOf(loc.path)), ...fact("root", loc.root),
      ...fact("size", humanBytes(loc.size || 0) + " (" + numbers.format(loc.size || 0) + " bytes)"),
      ...fact("modified", dateOf(loc)), ...fact("type", loc.mime_type || "unknown"),
      ...fact("hash", loc.hash || (loc.is_missing ? "—" : "not hashed yet")),
      ...(loc.comfyui ? fact("ComfyUI", loc.comfyui.category + ": " + loc.comfyui.loader_path) : []));
    const mine = new Set(loc.user_tags || []);
    $("pv-tags").replaceChildren(...(loc.user_tags || []).map((t) => chip(loc, t, true)));
    if (!mine.size) $("pv-tags").append(span("sub", "none yet"));
    $("pv-auto").replaceChildren(...(loc.tags || []).filter((t) => !mine.has(t)).map((t) => chip(loc, t, false)));
  }

  function closePreview() {
    const el = rendered.get(view.selected);
    if (el) { el.classList.remove("selected"); el.focus(); }
    view.selected = null;
    $("preview").hidden = true;
    scheduleRender();
  }

  // -- input ---------------------------------------------------------------------------

  function entryOf(node) { return node && node.closest ? node.closest(".entry") : null; }

  function moveFocus(index) {
    if (!view.items.length) return;
    index = Math.max(0, Math.min(view.items.length - 1, index));
    view.focus = index;
    const g = geometry();
    const scroller = $("scroller");
    const y = Math.floor(index / g.cols) * g.rowH;
    if (y < scroller.scrollTop) scroller.scrollTop = y;
    else if (y + g.rowH > scroller.scrollTop + scroller.clientHeight) scroller.scrollTop = y + g.rowH - scroller.clientHeight;
    render();
    const el = rendered.get(key(view.items[index]));
    if (el) el.focus({ preventScroll: true });
  }

  function setMode(mode) {
    view.mode = mode;
    localStorage.setItem("assetd.view", mode);
    $("spacer").className = mode;
    $("listhead").hidden = mode !== "list";
    $("view-grid").setAttribute("aria-pressed", String(mode === "grid"));
    $("view-list").setAttribute("aria-pressed", String(mode === "list"));
    for (const el of rendered.values()) el._pos = null;
    render();
  }

  function toast(text) {
    const t = $("toast");
    t.textContent = text;
    t.hidden = false;
    clearTimeout(t._timer);
    t._timer = setTimeout(() => { t.hidden = true; }, 5000);
  }

  function fillTagList() {
    const seen = new Set();
    for (const loc of view.items.slice(0, 2000)) for (const t of loc.tags || []) seen.add(t);
    $("tag-list").replaceChildren(...[...seen].sort().slice(0, 300).map((t) => new Option(t)));
  }

  let typing = null;
  function relistSoon() { clearTimeout(typing); typing = setTimeout(relist, 250); }

  function wire() {
    $("q").addEventListener("input", relistSoon);
    $("tag").addEventListener("input", relistSoon);
    for (const id of ["root", "missing", "sort"]) $(id).addEventListener("change", relist);
    $("order").addEventListener("click", () => {
      const o = $("order");
      o.dataset.order = o.dataset.order === "asc" ? "desc" : "asc";
      o.textContent = o.dataset.order === "asc" ? "↑" : "↓";
      o.setAttribute("aria-label", "sort order: " + (o.dataset.order === "asc" ? "ascending" : "descending"));
      relist();
    });
    $("view-grid").addEventListener("click", () => setMode("grid"));
    $("view-list").addEventListener("click", () => setMode("list"));
    $("news").addEventListener("click", relist);
    $("pv-close").addEventListener("click", closePreview);
    $("pv-tag-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const t = $("pv-tag-input").value.trim();
      const loc = $("preview")._loc;
      if (t && loc) { changeTags(loc, [t], []); $("pv-tag-input").value = ""; }
    });
    const scroller = $("scroller");
    scroller.addEventListener("scroll", scheduleRender, { passive: true });
    scroller.addEventListener("click", (e) => {
      const el = entryOf(e.target);
      if (el && !e.target.closest("button, input")) { view.focus = el._index; select(el._loc); }
    });
    document.addEventListener("keydown", (e) => {
      if (e.target.closest("input, select, textarea, aside, #login")) return;
      const el = entryOf(document.activeElement);
      const at = el ? el._index : view.focus;
      const cols = geometry().cols;
      const rowsPerPage = Math.max(1, Math.floor(scroller.clientHeight / geometry().rowH));
      const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: cols, ArrowUp: -cols, PageDown: cols * rowsPerPage, PageUp: -cols * rowsPerPage };
      if (e.key in moves) { e.preventDefault(); moveFocus((at < 0 ? 0 : at) + (at < 0 ? 0 : moves[e.key])); }
      else if (e.key === "Home") { e.preventDefault(); moveFocus(0); }
      else if (e.key === "End") { e.preventDefault(); moveFocus(view.items.length - 1); }
      else if ((e.key === "Enter" || e.key === " ") && el && el === e.target) { e.preventDefault(); select(el._loc); }
    });
    document.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && !$("preview").hidden) closePreview();
      if (e.key === "/" && !e.target.closest("input, select")) { e.preventDefault(); $("q").focus(); }
    });
    new ResizeObserver(() => { for (const el of rendered.values()) el._pos = null; scheduleRender(); }).observe(scroller);
  }

  async function start() {
    wire();
    setMode(view.mode);
    try { showStatus(await api("/api/assets/seed/status")); } catch (e) { toast(e.message); }
    connect();
  }

  start();
})();
