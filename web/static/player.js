// Channel page player: native HLS where the browser has it, hls.js elsewhere. It polls the API
// and switches between the offline card and the player when the stream starts or stops; when
// it stops, what is buffered plays out to the playlist's end (ENDLIST) before the card shows.
// A past broadcast (the list under the player) plays in the same player; "Back to the live
// stream" returns to live.
"use strict";
(() => {
  const root = document.getElementById("channel");
  if (!root) return;
  const video = root.querySelector("video");
  const playerBox = root.querySelector(".player");
  const offlineBox = root.querySelector(".offline");
  const problem = root.querySelector(".problem");
  const field = (name) => root.querySelector(`[data-field="${name}"]`);
  const forceHlsjs = new URLSearchParams(location.search).get("player") === "hlsjs";
  const lowLatency = root.dataset.lowLatency === "true";
  const latencyField = field("latency");
  let latencyTimer = 0;
  let live = false;
  let hls = null;
  let hlsjsLoading = null;
  let retryTimer = 0;
  let endTimer = 0;
  let generation = 0;
  let vod = null; // the playlist of the past broadcast playing, or null: live
  const backToLive = root.querySelector(".watch-live");

  // With LL-HLS on, hls.js (lowLatencyMode) wherever Media Source Extensions exist: not every
  // native HLS player fetches parts (Chromium's does not); where there are none (iPhone
  // Safari), the native player, which plays LL-HLS itself.
  const mse = () => Boolean(window.MediaSource || window.ManagedMediaSource);
  const nativeHls = () =>
    !forceHlsjs &&
    !(lowLatency && mse()) &&
    video.canPlayType("application/vnd.apple.mpegurl") !== "";

  function loadHlsjs() {
    if (window.Hls) return Promise.resolve(window.Hls);
    if (!hlsjsLoading) {
      hlsjsLoading = new Promise((resolve, reject) => {
        const script = document.createElement("script");
        script.src = root.dataset.hlsjs;
        script.async = true;
        script.onload = () => (window.Hls ? resolve(window.Hls) : reject(new Error("no Hls")));
        script.onerror = () => {
          hlsjsLoading = null;
          reject(new Error("hls.js did not load"));
        };
        document.head.appendChild(script);
      });
    }
    return hlsjsLoading;
  }

  function showProblem(text) {
    problem.textContent = text;
    problem.hidden = !text;
  }

  function detach() {
    generation += 1;
    clearTimeout(retryTimer);
    clearInterval(latencyTimer);
    latencyField.hidden = true;
    if (hls) {
      hls.destroy();
      hls = null;
    }
    if (video.getAttribute("src")) {
      video.removeAttribute("src");
      video.load();
    }
  }

  function retrySoon() {
    clearTimeout(retryTimer);
    retryTimer = setTimeout(() => (live || vod) && attach(), 3000);
  }

  async function attach() {
    detach();
    const mine = generation;
    const url = vod || root.dataset.playlist;
    showProblem("");
    if (nativeHls()) {
      root.dataset.engine = "native";
      video.src = url;
    } else {
      let Hls;
      try {
        Hls = await loadHlsjs();
      } catch {
        showProblem("The video player could not be loaded. Retrying…");
        retrySoon();
        return;
      }
      if (mine !== generation || !(live || vod)) return;
      if (!Hls.isSupported()) {
        showProblem("This browser cannot play HLS video.");
        return;
      }
      root.dataset.engine = "hlsjs";
      // LL-HLS: parts, blocking playlist reloads and preload hints (hls.js lowLatencyMode).
      hls = new Hls({ liveDurationInfinity: !vod, lowLatencyMode: lowLatency && !vod });
      hls.on(Hls.Events.ERROR, (_event, data) => {
        if (!data.fatal) return;
        if (data.type === Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
        else retrySoon();
      });
      hls.loadSource(url);
      hls.attachMedia(video);
    }
    video.play().catch(() => {}); // autoplay may be refused; the controls remain
    clearInterval(latencyTimer);
    if (!vod) latencyTimer = setInterval(showLatency, 1000);
  }

  function latency() {
    // Seconds behind the live edge: hls.js measures it; a native player exposes the
    // playlist's PROGRAM-DATE-TIME of its position (getStartDate), which rtmpd anchors to
    // the time the media arrived.
    if (hls && typeof hls.latency === "number" && hls.latency > 0) return hls.latency;
    const start = video.getStartDate ? video.getStartDate().getTime() : NaN;
    if (!Number.isFinite(start) || !(video.currentTime > 0)) return NaN;
    return (Date.now() - start) / 1000 - video.currentTime;
  }

  function showLatency() {
    const value = latency();
    if (!Number.isFinite(value) || video.paused) {
      latencyField.hidden = true;
      return;
    }
    latencyField.textContent = `${value.toFixed(1)} s behind live${lowLatency ? " · low latency" : ""}`;
    latencyField.hidden = false;
    root.dataset.latency = value.toFixed(3);
  }

  video.addEventListener("error", () => {
    if ((live || vod) && !hls) retrySoon(); // native player: playlist not there yet, or a hiccup
  });

  function showOffline() {
    clearTimeout(endTimer);
    video.removeEventListener("ended", showOffline);
    if (live || vod) return;
    root.classList.remove("ending");
    playerBox.hidden = true;
    offlineBox.hidden = false;
    detach();
    showProblem("");
  }

  function playOut() {
    // The stream ended: the seconds still buffered are the end of the broadcast, and the
    // playlist now says so (ENDLIST), so the player stops by itself ("ended"). A player that
    // is not playing has nothing to wait for; a timer covers a player that never ends.
    const buffered = video.buffered.length ? video.buffered.end(video.buffered.length - 1) : 0;
    const rest = buffered - video.currentTime;
    if (video.paused || video.ended || !(rest > 0.1)) {
      showOffline();
      return;
    }
    root.classList.add("ending");
    video.addEventListener("ended", showOffline);
    endTimer = setTimeout(showOffline, (rest + 15) * 1000);
  }

  function setLive(now) {
    if (now === live) return;
    live = now;
    root.classList.toggle("live", now);
    if (backToLive) backToLive.hidden = !(vod && now);
    if (vod) return; // a past broadcast plays on; the button offers the live stream
    if (now) {
      clearTimeout(endTimer);
      video.removeEventListener("ended", showOffline);
      root.classList.remove("ending");
      playerBox.hidden = false;
      offlineBox.hidden = true;
      attach();
    } else {
      playOut();
    }
  }

  function duration(s) {
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    if (h) return `${h} h ${String(m).padStart(2, "0")} min`;
    return m ? `${m} min` : `${s} s`;
  }

  function render(info) {
    field("status").textContent = info.live ? "Live" : "Offline";
    field("uptime").textContent = info.live && info.uptime_seconds !== null
      ? `for ${duration(info.uptime_seconds)}` : "";
    field("viewers").textContent = String(info.viewers);
    const parts = [];
    if (info.video) parts.push(`${info.video.name || info.video.codec} ${info.video.width}×${info.video.height}`);
    if (info.audio) parts.push(`${info.audio.name || info.audio.codec} ${info.audio.sample_rate} Hz`);
    field("tech").textContent = parts.join(" · ");
    const list = field("renditions");
    if (list) {
      list.replaceChildren(...(info.renditions || []).map((r) => {
        const item = document.createElement("li");
        const kbps = r.kbps ? ` ${Math.round(r.kbps)} kb/s` : "";
        item.textContent = `${r.width}×${r.height} ${r.name || r.codec}${kbps}`;
        return item;
      }));
      list.hidden = !list.children.length;
    }
  }

  async function poll() {
    try {
      const response = await fetch(root.dataset.api, { cache: "no-store" });
      if (!response.ok) return;
      const info = await response.json();
      render(info);
      setLive(info.live);
    } catch {
      // offline or server restarting: try again on the next tick
    }
  }

  function playRecording(link) {
    vod = link.dataset.playlist;
    root.dataset.playing = vod;
    for (const item of root.querySelectorAll(".recording")) {
      item.classList.toggle("playing", item.contains(link));
    }
    clearTimeout(endTimer);
    video.removeEventListener("ended", showOffline);
    root.classList.remove("ending");
    playerBox.hidden = false;
    offlineBox.hidden = true;
    if (backToLive) backToLive.hidden = !live;
    attach();
    playerBox.scrollIntoView({ block: "nearest" });
  }

  function watchLive() {
    vod = null;
    delete root.dataset.playing;
    for (const item of root.querySelectorAll(".recording.playing")) item.classList.remove("playing");
    if (backToLive) backToLive.hidden = true;
    if (live) attach();
    else showOffline();
  }

  for (const link of root.querySelectorAll(".recordings a[data-playlist]")) {
    link.addEventListener("click", (event) => {
      event.preventDefault();
      playRecording(link);
    });
  }
  if (backToLive) backToLive.querySelector("button").addEventListener("click", watchLive);

  live = root.dataset.live !== "true"; // so that the first setLive below acts
  setLive(!live);
  setInterval(poll, 4000);
})();
