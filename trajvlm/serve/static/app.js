// The TrajVLM page: pick or upload a video, ask, stream the answer from /v1/chat/completions, show the visual-token
// count and TrajTok's trajectory overlay. Plain browser JavaScript, no build step.
"use strict";

const state = {
  model: null,          // the served model card from /v1/models
  videoUrl: null,       // file:// URL under the media root, or a data:video/...;base64 upload
  videoLabel: "",
  messages: [],         // OpenAI messages of the conversation so far (the video in the first user message)
  busy: false,
  conversation: 0,      // bumped by every new conversation: an answer of an older one must not touch this one
  inflight: null,       // AbortController of the question being answered
};

const $ = (id) => document.getElementById(id);

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "muted";
}

async function errorText(response) {
  try {
    const body = await response.json();
    return `${response.status}: ${body.error ? body.error.message : JSON.stringify(body)}`;
  } catch (e) {
    return `${response.status} ${response.statusText}`;
  }
}

async function loadModelInfo() {
  const response = await fetch("/v1/models");
  const card = (await response.json()).data[0];
  state.model = card;
  $("model-info").textContent =
    `${card.id} · connector ${card.connector} · uploads up to ${card.max_upload_mb} MiB · ≤ ${card.max_frames} frames`;
  if (card.max_tokens_limit) $("max-tokens").max = card.max_tokens_limit;
  if (card.media_root) {
    const media = (await (await fetch("/v1/media")).json()).data;
    for (const item of media) {
      const option = document.createElement("option");
      option.value = item.url;
      option.textContent = item.name;
      if (item.preview) option.dataset.preview = item.preview;
      $("media-select").appendChild(option);
    }
  } else {
    $("media-select").disabled = true;
    $("media-select").options[0].textContent = "(no media root on this server)";
  }
}

function newConversation() {
  state.conversation += 1;
  if (state.inflight) state.inflight.abort(); // the server stops generating the old answer
  state.inflight = null;
  state.busy = false;
  $("ask").disabled = false;
  state.messages = [];
  $("conversation").innerHTML = "";
  setStatus("ready");
}

function chooseVideo(url, label, previewSrc) {
  state.videoUrl = url;
  state.videoLabel = label;
  newConversation();
  $("video-status").textContent = url ? `video: ${label}` : "no video: questions are answered from text only";
  const preview = $("preview");
  if (previewSrc) {
    preview.src = previewSrc;
    preview.hidden = false;
  } else {
    preview.removeAttribute("src");
    preview.hidden = true;
  }
  if (url) showOverlay(url);
  else {
    $("overlay").hidden = true;
    $("overlay-status").textContent = "choose a video to see its trajectory tokens";
  }
}

async function showOverlay(url) {
  const img = $("overlay");
  img.hidden = true;
  if (!state.model.trajectory_overlay) {
    $("overlay-status").textContent =
      `Trajectory overlay unavailable: this model uses the '${state.model.connector}' connector, which forms no ` +
      "trajectories.";
    return;
  }
  $("overlay-status").textContent = "computing trajectories…";
  const response = await fetch("/v1/trajectory_overlay", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ video_url: { url } }),
  });
  if (url !== state.videoUrl) return; // another video was chosen meanwhile
  if (!response.ok) {
    $("overlay-status").textContent = `overlay failed: ${await errorText(response)}`;
    return;
  }
  const overlay = await response.json();
  img.src = overlay.image;
  img.hidden = false;
  $("overlay-status").textContent =
    `${overlay.trajectories} trajectories over ${overlay.frames} frames (one colour per trajectory)`;
}

function addTurn(role, text) {
  const div = document.createElement("div");
  div.className = `turn ${role}`;
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  div.appendChild(body);
  $("conversation").appendChild(div);
  $("conversation").scrollTop = $("conversation").scrollHeight;
  return div;
}

async function ask(question) {
  const conversation = state.conversation;
  const current = () => conversation === state.conversation; // false once another video or conversation began
  const controller = new AbortController();
  state.inflight = controller;
  const content = [];
  if (state.videoUrl && state.messages.length === 0) {
    content.push({ type: "video_url", video_url: { url: state.videoUrl } });
  }
  content.push({ type: "text", text: question });
  const messages = [...state.messages, { role: "user", content }];
  const userTurn = addTurn("user", question);
  const turn = addTurn("assistant", "");
  turn.id = `answer-${state.messages.length / 2}`;
  const textEl = turn.querySelector(".text");
  const meta = document.createElement("span");
  meta.className = "meta muted";
  turn.appendChild(meta);
  // A question that got no answer leaves the conversation and goes back to the input, to be asked again.
  const fail = (message) => {
    if (!current()) return;
    userTurn.remove();
    turn.remove();
    if (!$("question").value) $("question").value = question;
    setStatus(`error ${message}`, true);
  };
  setStatus("waiting for the model…");
  const started = performance.now();
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      signal: controller.signal,
      body: JSON.stringify({
        model: state.model.id,
        messages,
        stream: true,
        stream_options: { include_usage: true },
        max_tokens: Number($("max-tokens").value) || 64,
        temperature: Number($("temperature").value) || 0,
      }),
    });
    if (!current()) return;
    if (!response.ok) {
      fail(await errorText(response));
      return;
    }
    let answer = "";
    let usage = null;
    let failure = null;
    let firstTokenMs = null;
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (!current()) return;
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        if (!event.startsWith("data: ")) continue;
        const data = event.slice(6);
        if (data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        if (chunk.error) failure = chunk.error.message;
        if (chunk.usage) usage = chunk.usage;
        for (const choice of chunk.choices || []) {
          if (choice.delta && choice.delta.content) {
            if (firstTokenMs === null) firstTokenMs = performance.now() - started;
            answer += choice.delta.content;
            textEl.textContent = answer;
            setStatus("streaming…");
          }
        }
      }
    }
    if (failure) {
      fail(`: ${failure}`);
      return;
    }
    state.messages = [...messages, { role: "assistant", content: answer }];
    if (usage) {
      meta.textContent =
        `${usage.visual_tokens} visual tokens (${usage.video_frames} frames) · ${usage.prompt_tokens} prompt tokens · ` +
        `${usage.completion_tokens} new tokens`;
      meta.dataset.visualTokens = usage.visual_tokens;
    }
    const seconds = ((performance.now() - started) / 1000).toFixed(2);
    setStatus(`done in ${seconds} s` + (firstTokenMs !== null ? ` (first text after ${(firstTokenMs / 1000).toFixed(2)} s)` : ""));
  } catch (err) {
    if (current()) fail(`: ${err}`); // an abort comes from a newer conversation: nothing to report
  } finally {
    if (state.inflight === controller) state.inflight = null;
  }
}

$("media-select").addEventListener("change", (e) => {
  $("file-input").value = "";
  const url = e.target.value;
  const option = e.target.selectedOptions[0];
  chooseVideo(url || null, option.textContent, (url && option.dataset.preview) || null);
});

$("file-input").addEventListener("change", (e) => {
  const file = e.target.files[0];
  if (!file) return;
  $("media-select").value = "";
  if (file.size > state.model.max_upload_mb * 1024 * 1024) {
    setStatus(`${file.name} is ${(file.size / 2 ** 20).toFixed(1)} MiB, over the server's ${state.model.max_upload_mb} MiB`, true);
    return;
  }
  const reader = new FileReader();
  reader.onload = () => {
    let url = reader.result; // data:<type>;base64,...
    if (!url.startsWith("data:video/")) url = url.replace(/^data:[^;]*;/, "data:video/mp4;");
    chooseVideo(url, `${file.name} (uploaded)`, URL.createObjectURL(file));
  };
  reader.readAsDataURL(file);
});

$("reset").addEventListener("click", newConversation);

$("ask-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const question = $("question").value.trim();
  if (!question || state.busy) return;
  state.busy = true;
  $("ask").disabled = true;
  $("question").value = "";
  const conversation = state.conversation;
  try {
    await ask(question);
  } finally {
    if (conversation === state.conversation || !state.inflight) {
      state.busy = false;
      $("ask").disabled = false;
    }
  }
});

$("question").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) {
    e.preventDefault();
    $("ask-form").requestSubmit();
  }
});

loadModelInfo().catch((err) => setStatus(`cannot reach the server: ${err}`, true));
