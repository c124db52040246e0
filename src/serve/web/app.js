// Fundus Retrieval page: upload a photograph, show the most similar graded cases (docs/api.md).
// Plain browser JavaScript, no build step, no external resources.
'use strict';

const GRADE_NAMES = ['No DR', 'Mild', 'Moderate', 'Severe', 'PDR'];

const $ = (id) => document.getElementById(id);
const state = { file: null, result: null, dialogCase: null, opener: null };

function gradeLabel(grade) {
  return grade >= 0 && grade < GRADE_NAMES.length ? `Grade ${grade} · ${GRADE_NAMES[grade]}` : 'Grade unknown';
}

function badge(grade) {
  const span = document.createElement('span');
  span.className = `badge grade-${grade}`;
  span.textContent = gradeLabel(grade);
  return span;
}

function setStatus(text, isError = false) {
  const s = $('status');
  s.textContent = text;
  s.classList.toggle('error', isError);
}

function eyeName(eye) {
  return eye === 'L' ? 'left eye' : eye === 'R' ? 'right eye' : 'eye unknown';
}

// The API's error ({code, message}, docs/api.md), or the HTTP status when the body is not one.
async function errorOf(response) {
  try {
    const body = await response.json();
    if (body && body.error) return body.error;
  } catch (e) { /* not JSON */ }
  return { code: '', message: `HTTP ${response.status}` };
}

// A refused query leaves nothing of an earlier answer on screen.
function clearResults() {
  state.result = null;
  $('query-view').hidden = true;
  $('estimate').hidden = true;
  $('results').replaceChildren();
}

function selectedGrades() {
  return [...document.querySelectorAll('#grade-filter input:checked')].map((c) => c.value);
}

function chooseFile(file) {
  if (!file) return;
  state.file = file;
  $('search-button').disabled = false;
  runQuery();
}

async function runQuery() {
  if (!state.file) return;
  const grades = selectedGrades();
  if (grades.length === 0) {
    setStatus('Select at least one grade to show.', true);
    return;
  }
  const form = new FormData();
  form.append('image', state.file, state.file.name || 'image');
  form.append('k', $('k-input').value || '12');
  if (grades.length < GRADE_NAMES.length) form.append('grades', grades.join(','));
  const exclude = $('exclude-input').value.trim();
  if (exclude) form.append('exclude_patient', exclude);

  setStatus('Searching…');
  $('search-button').disabled = true;
  try {
    const response = await fetch('/api/query', { method: 'POST', body: form });
    if (!response.ok) {
      const error = await errorOf(response);
      clearResults();
      setStatus(error.code === 'no_field_of_view'
        ? `Not searched: ${error.message}. No similar cases or grade suggestion are shown for an image ` +
          'without a field of view.'
        : `Search failed: ${error.message}`, true);
      return;
    }
    state.result = await response.json();
    render(state.result);
  } catch (e) {
    setStatus(`Search failed: ${e.message}`, true);
  } finally {
    $('search-button').disabled = false;
  }
}

function render(result) {
  $('query-view').hidden = false;
  const toggle = $('attention-toggle');
  toggle.disabled = !result.attention_url;
  showQueryImage();

  renderWarnings(result.warnings || []);
  renderEstimate(result.estimate);

  const list = $('results');
  list.replaceChildren();
  result.results.forEach((c, i) => list.appendChild(caseCard(c, i)));
  const n = result.results.length;
  const ms = result.timing_ms && result.timing_ms.request ? ` in ${Math.round(result.timing_ms.request)} ms` : '';
  setStatus(n === 0 ? 'No cases match the selected grades.'
                    : `${n} most similar case${n === 1 ? '' : 's'}${ms}, most similar first; the number on each ` +
                      'card is its cosine similarity to the query (1 = identical). Select a case for details.');
}

function showQueryImage() {
  const r = state.result;
  if (!r) return;
  const attention = $('attention-toggle').checked && r.attention_url;
  $('query-image').src = attention ? r.attention_url : r.preprocessed_url;
  $('query-image').alt = attention ? 'The query photograph with the attention map overlaid'
                                   : 'The query photograph after field-of-view cropping';
  $('query-caption').textContent = attention ? 'Query with attention map (where the model looked)'
                                             : 'Query (preprocessed)';
}

// Reasons not to trust this result (a collapsed model, tied similarities, no close match): shown
// above everything else, in words, never as colour alone.
function renderWarnings(warnings) {
  const list = $('warnings');
  list.replaceChildren();
  warnings.forEach((w) => {
    const li = document.createElement('li');
    li.dataset.code = w.code;
    const strong = document.createElement('strong');
    strong.textContent = 'Warning:';
    li.append(strong, w.message);
    list.appendChild(li);
  });
  list.hidden = warnings.length === 0;
}

function renderEstimate(est) {
  const box = $('estimate');
  box.hidden = false;
  $('estimate-text').replaceChildren();
  if (est.withheld) {
    $('estimate-text').textContent = `No grade suggestion: ${est.withheld_reason}`;
  } else if (est.grade < 0) {
    $('estimate-text').textContent = 'No cases retrieved, so no grade suggestion.';
  } else {
    $('estimate-text').append(badge(est.grade),
                              ` with ${Math.round(est.confidence * 100)}% of the vote`);
  }
  const chart = $('vote-chart');
  chart.replaceChildren();
  est.votes.forEach((share, g) => {
    const li = document.createElement('li');
    const label = document.createElement('span');
    label.textContent = `${g} ${GRADE_NAMES[g]}`;
    const track = document.createElement('span');
    track.className = 'track';
    const bar = document.createElement('span');
    bar.className = `bar grade-${g}`;
    bar.style.display = 'block';
    bar.style.width = `${(share * 100).toFixed(1)}%`;
    track.appendChild(bar);
    const pct = document.createElement('span');
    pct.className = 'pct';
    pct.textContent = `${Math.round(share * 100)}%`;
    li.append(label, track, pct);
    li.setAttribute('aria-label', `${gradeLabel(g)}: ${Math.round(share * 100)} percent`);
    chart.appendChild(li);
  });
}

function caseCard(c, index) {
  const li = document.createElement('li');
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'card';
  button.dataset.index = String(index);
  button.dataset.id = String(c.id);
  button.setAttribute('aria-label',
    `Rank ${c.rank}: ${gradeLabel(c.grade)}, similarity ${c.similarity.toFixed(3)}, ` +
    `patient ${c.patient || 'unknown'}, ${eyeName(c.eye)}. Open details.`);
  const img = document.createElement('img');
  img.src = c.thumbnail_url;
  img.alt = '';
  img.loading = 'lazy';
  const meta = document.createElement('span');
  meta.className = 'meta';
  const sim = document.createElement('span');
  sim.className = 'sim';
  sim.textContent = c.similarity.toFixed(3);
  sim.title = 'cosine similarity to the query';
  meta.append(badge(c.grade), sim);
  const who = document.createElement('span');
  who.className = 'who';
  who.textContent = `#${c.rank} · ${c.patient || 'patient ?'} · ${c.eye || '?'}`;
  button.append(img, meta, who);
  button.addEventListener('click', () => openCase(c, button));
  li.appendChild(button);
  return li;
}

function openCase(c, opener) {
  state.dialogCase = c;
  state.opener = opener;
  $('dialog-title').textContent = `${gradeLabel(c.grade)}: case ${c.external_id || c.id}`;
  $('dialog-attention-toggle').checked = false;
  showDialogImage();
  const dl = $('dialog-details');
  dl.replaceChildren();
  const rows = [
    ['Grade', gradeLabel(c.grade)],
    ['Similarity', `${c.similarity.toFixed(3)} (rank ${c.rank})`],
    ['Patient', c.patient || 'unknown'],
    ['Eye', eyeName(c.eye)],
    ['Case id', c.external_id || String(c.id)],
    ['Split', c.split || '–'],
    ['Added', c.added_at || '–'],
  ];
  for (const [k, v] of rows) {
    const dt = document.createElement('dt');
    dt.textContent = k;
    const dd = document.createElement('dd');
    dd.textContent = v;
    dl.append(dt, dd);
  }
  $('case-dialog').showModal();
  $('dialog-close').focus();
}

function showDialogImage() {
  const c = state.dialogCase;
  if (!c) return;
  const attention = $('dialog-attention-toggle').checked;
  $('dialog-image').src = attention ? c.attention_url : c.image_url;
  $('dialog-image').alt = attention ? `Case ${c.external_id || c.id} with its attention map`
                                    : `Fundus photograph of case ${c.external_id || c.id}`;
  $('dialog-caption').textContent = attention ? 'Attention map of this case' : 'Photograph';
}

function setupDropZone() {
  const zone = $('drop-zone');
  ['dragenter', 'dragover'].forEach((t) => zone.addEventListener(t, (e) => {
    e.preventDefault();
    zone.classList.add('dragging');
  }));
  ['dragleave', 'drop'].forEach((t) => zone.addEventListener(t, (e) => {
    e.preventDefault();
    zone.classList.remove('dragging');
  }));
  zone.addEventListener('drop', (e) => chooseFile(e.dataTransfer.files[0]));
}

async function showServerInfo() {
  try {
    const response = await fetch('/api/health');
    if (!response.ok) return;
    const h = await response.json();
    const n = h.indexed !== undefined ? h.indexed : h.cases;
    const cases = n !== undefined ? `${n} graded cases searchable.` : '';
    $('footer').textContent = `Research tool, not a diagnostic device. ${cases}`.trim();
  } catch (e) { /* the footer keeps its default text */ }
}

document.addEventListener('DOMContentLoaded', () => {
  setupDropZone();
  $('file-input').addEventListener('change', (e) => chooseFile(e.target.files[0]));
  $('query-form').addEventListener('submit', (e) => {
    e.preventDefault();
    runQuery();
  });
  document.querySelectorAll('#grade-filter input').forEach((c) => c.addEventListener('change', runQuery));
  $('attention-toggle').addEventListener('change', showQueryImage);
  $('dialog-attention-toggle').addEventListener('change', showDialogImage);
  $('dialog-close').addEventListener('click', () => $('case-dialog').close());
  // Escape closes a modal <dialog> natively; give focus back to the card that opened it.
  $('case-dialog').addEventListener('close', () => {
    if (state.opener) state.opener.focus();
  });
  showServerInfo();
});
