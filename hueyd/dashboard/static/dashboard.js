// hueyd's dashboard: fills each page from the JSON under api/ and keeps it fresh by polling.
// Whatever the storage returns goes into the page as text (el() appends text nodes; nothing
// here uses innerHTML), so task arguments, results and errors can never become markup.
'use strict';

(function () {
  const body = document.body;
  const ROOT = body.dataset.root;
  const CSRF = body.dataset.csrf;
  const SETTINGS = JSON.parse(body.dataset.settings);
  const main = document.getElementById('main');
  const live = document.getElementById('live');

  // -- building the page ------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttributes(node, attrs);
    return fill(node, ...children);
  }

  // Replaces node's children: nodes, and strings as text; arrays are flattened, null skipped.
  function fill(node, ...children) {
    node.replaceChildren(...children.flat(Infinity).filter((child) => child !== null && child !== undefined)
      .map((child) => child instanceof Node ? child : document.createTextNode(String(child))));
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
    setAttributes(node, attrs);
    for (const child of children) node.append(child instanceof Node ? child : String(child));
    return node;
  }

  function setAttributes(node, attrs) {
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? '' : value);
    }
  }

  function table(headers, rows, attrs) {
    return el('table', attrs, el('thead', {}, el('tr', {}, headers.map((h) => el('th', {}, h)))),
      el('tbody', {}, rows));
  }

  function taskLink(id) {
    return id ? el('a', {href: ROOT + '/task/' + encodeURIComponent(id), class: 'mono'}, id) : '-';
  }

  function button(label, onclick, attrs) {
    return el('button', Object.assign({type: 'button', onclick: onclick}, attrs), label);
  }

  function pad(n) { return String(n).padStart(2, '0'); }

  function when(ts) {
    if (!ts) return '-';
    const d = new Date(ts * 1000);
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' +
      pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
  }

  function clock(ts) {
    const d = new Date(ts * 1000);
    return pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
  }

  // As hueyctl status writes them: 12.3s, 4m05s, 2h03m, 3d04h.
  function duration(s) {
    if (s === null || s === undefined) return '-';
    if (s < 60) return s.toFixed(1) + 's';
    s = Math.floor(s);
    if (s < 3600) return Math.floor(s / 60) + 'm' + pad(s % 60) + 's';
    if (s < 86400) return Math.floor(s / 3600) + 'h' + pad(Math.floor(s % 3600 / 60)) + 'm';
    return Math.floor(s / 86400) + 'd' + pad(Math.floor(s % 86400 / 3600)) + 'h';
  }

  // A task's duration in the statistics: 4ms, 1.25s, 4m05s.
  function seconds(s) {
    if (s === null || s === undefined) return '-';
    if (s < 1) return Math.round(s * 1000) + 'ms';
    return s < 60 ? s.toFixed(2) + 's' : duration(s);
  }

  function size(bytes) {
    return bytes === null || bytes === undefined ? '-' : Math.round(bytes / 1048576) + 'M';
  }

  function lastLine(text) {
    const lines = (text || '').split('\n').filter((line) => line.trim());
    return lines.length ? lines[lines.length - 1].trim() : '';
  }

  // -- talking to the server ------------------------------------------------------------

  async function api(path) {
    const reply = await fetch(ROOT + path, {headers: {Accept: 'application/json'}});
    if (!reply.ok) throw new Error(reply.status + ' ' + reply.statusText);
    return reply.json();
  }

  async function post(path, payload) {
    const reply = await fetch(ROOT + path, {
      method: 'POST', body: JSON.stringify(payload),
      headers: {'Content-Type': 'application/json', 'X-CSRF-Token': CSRF},
    });
    if (!reply.ok) {
      window.alert('The action failed: ' + reply.status + ' ' + reply.statusText);
      return null;
    }
    return (await reply.json()).done;
  }

  // Calls load() now and every `ms` while the tab is visible; returns a function that
  // refreshes at once (after an action). Runs never overlap.
  function every(ms, load) {
    let timer = null;
    let running = false;
    async function tick() {
      clearTimeout(timer);
      if (running) return;
      running = true;
      try {
        if (!document.hidden) {
          await load();
          live.textContent = 'live · ' + clock(Date.now() / 1000);
          live.className = 'live';
        }
      } catch (error) {
        live.textContent = 'cannot refresh: ' + error.message;
        live.className = 'live bad';
      } finally {
        running = false;
        timer = setTimeout(tick, ms);
      }
    }
    tick();
    return tick;
  }

  // Redraws only when the data changed, so a button is not replaced under the pointer.
  const drawn = {};
  function changed(key, data) {
    const json = JSON.stringify(data);
    if (drawn[key] === json) return false;
    drawn[key] = json;
    return true;
  }

  // -- overview -----------------------------------------------------------------------

  function figure(label, value, href, bad) {
    return el(href ? 'a' : 'div', {class: 'figure' + (bad ? ' bad' : ''), href: href && ROOT + href},
      el('span', {class: 'value'}, value), el('span', {class: 'label'}, label));
  }

  function chart(points) {
    const W = 600, H = 100, TOP = 14, BOTTOM = 16, step = W / points.length;
    const maxRate = Math.max(1, ...points.map((p) => p.rate || 0));
    const maxFailures = Math.max(1, ...points.map((p) => p.failures || 0));
    const y = (value, max) => TOP + H - value / max * H;
    const parts = [svg('line', {x1: 0, x2: W, y1: TOP + H, y2: TOP + H, class: 'axis'})];
    let path = '';
    points.forEach((p, i) => {
      const x = i * step;
      if (p.failures) {
        const top = y(p.failures, maxFailures);
        parts.push(svg('rect', {x: x + 1, width: step - 2, y: top, height: TOP + H - top, class: 'failures'}));
      }
      if (p.rate !== null) {
        const cx = (x + step / 2).toFixed(1), cy = y(p.rate, maxRate).toFixed(1);
        path += (path && points[i - 1].rate !== null ? 'L' : 'M') + cx + ' ' + cy;
        parts.push(svg('circle', {cx: cx, cy: cy, r: 2, class: 'sample'}));
      }
      const tip = clock(p.t).slice(0, 5) + '  ' + (p.rate === null ? 'no sample' : p.rate.toFixed(2) + ' tasks/s') +
        (p.failures === null ? '' : ', ' + p.failures + ' failure(s)');
      parts.push(svg('rect', {x: x, width: step, y: 0, height: TOP + H, class: 'hover'}, svg('title', {}, tip)));
    });
    if (path) parts.push(svg('path', {d: path, class: 'rate'}));
    parts.push(svg('text', {x: 2, y: 10, class: 'label'}, maxRate.toPrecision(2) + ' tasks/s'));
    parts.push(svg('text', {x: W - 2, y: 10, class: 'label failures-label', 'text-anchor': 'end'}, maxFailures + ' failures/min'));
    parts.push(svg('text', {x: 2, y: TOP + H + BOTTOM - 3, class: 'label'}, '60 min ago'));
    parts.push(svg('text', {x: W - 2, y: TOP + H + BOTTOM - 3, class: 'label', 'text-anchor': 'end'}, 'now'));
    return svg('svg', {viewBox: '0 0 ' + W + ' ' + (TOP + H + BOTTOM), class: 'chart', role: 'img',
      'aria-label': 'tasks per second (line) and failures per minute (bars) over the last hour'}, ...parts);
  }

  function workersShown(pool) {
    const workers = pool.workers || [];
    if (workers.length <= 8) return workers;  // e.g. 100 greenlets: the busy ones, then a count
    const idle = workers.filter((w) => w.state !== 'busy').length;
    return workers.filter((w) => w.state === 'busy').concat(idle ? [{worker: '-', state: idle + ' idle'}] : []);
  }

  function nodeView(node) {
    const title = node.missing_record
      ? ['node ', node.node, ' (no node record: its scheduler is starting, or not running)']
      : ['node ', node.node, ' · up ', duration(node.uptime), ' · hueyd ', node.version, ' · ',
        node.pools.length, ' pool(s) of ', node.worker_type, ' workers · scheduler ', node.scheduler_pid || '-'];
    const rows = [];
    for (const pool of node.pools) {
      const workers = workersShown(pool);
      workers.forEach((worker, i) => {
        const busy = worker.state === 'busy';
        const first = i === 0 ? [
          el('td', {rowspan: workers.length}, (pool.index + 1) + '/' + pool.count, pool.state === 'stopping' ? ' stopping' : ''),
          el('td', {rowspan: workers.length}, pool.pid),
          el('td', {rowspan: workers.length}, size(pool.rss)),
          el('td', {rowspan: workers.length, class: 'num'}, pool.tasks_done),
          el('td', {rowspan: workers.length, class: 'num'}, pool.tasks_per_second.toFixed(2)),
        ] : [];
        rows.push(el('tr', {class: busy ? 'busy' : null}, first, el('td', {}, worker.worker),
          el('td', {}, el('span', {class: 'state ' + (busy ? 'busy' : 'idle')}, worker.state)),
          el('td', {}, busy ? worker.task : ''), el('td', {}, busy ? taskLink(worker.id) : ''),
          el('td', {class: 'num'}, busy ? duration(worker.running) : '')));
      });
    }
    return el('section', {class: 'node'}, el('h3', {}, title), rows.length
      ? table(['Pool', 'PID', 'Memory', 'Done', 'Tasks/s', 'Worker', 'State', 'Task', 'Task id', 'Running for'], rows)
      : el('p', {class: 'muted'}, 'No pool is running.'));
  }

  function overview() {
    const figures = el('div', {class: 'figures'});
    const history = el('section');
    const nodes = el('section');
    fill(main, figures, history, nodes);
    every(2000, async () => {
      const s = await api('/api/status');
      fill(figures,
        figure('queued', s.queued, '/queue'), figure('scheduled', s.scheduled, '/queue'),
        figure('results', s.results), figure('dead letters', s.dead_letters, '/dead-letters', s.dead_letters),
        figure('workers busy', s.workers_busy + '/' + s.workers),
        figure('tasks/s (last minute)', s.tasks_per_second.toFixed(2)));
      if (changed('chart', s.chart)) {
        fill(history, el('h2', {}, 'The last hour'), chart(s.chart), el('p', {class: 'muted'}, s.chart_stored
          ? ['Line: tasks per second; bars: failures per minute; of every node, from the statistics the storage keeps. ',
            el('a', {href: ROOT + '/stats'}, 'Per task')]
          : ['Line: tasks per second, sampled from the nodes every 10 s; bars: failures per minute, from the events',
            s.events_on === false ? ' (events are off: ' + s.events_off_reason + ')' : '',
            '. Kept by this dashboard since it started (this storage keeps no statistics).']));
      }
      if (!s.node_state) fill(nodes, el('p', {class: 'muted'}, 'This storage keeps no node state: nodes are not shown.'));
      else if (!s.nodes.length) fill(nodes, el('p', {class: 'muted'}, 'No hueyd node is running on this storage.'));
      else fill(nodes, el('h2', {}, 'Nodes'), s.nodes.map(nodeView));
    });
  }

  // -- task statistics ------------------------------------------------------------------

  function windowCells(w) {
    return [el('td', {class: 'num'}, w.runs), el('td', {class: 'num' + (w.failures ? ' bad' : '')}, w.failures),
      el('td', {class: 'num'}, w.retries), el('td', {class: 'num'}, seconds(w.p50)),
      el('td', {class: 'num'}, seconds(w.p95)), el('td', {class: 'num'}, seconds(w.max))];
  }

  function stats() {
    const list = el('div');
    fill(main, el('h2', {}, 'Task statistics'), list);
    every(10000, async () => {
      const r = await api('/api/stats');
      if (!changed('stats', r)) return;
      if (!r.stats) {
        fill(list, el('p', {class: 'muted'}, r.storage + ' keeps no task statistics.'));
        return;
      }
      const figures = ['Runs', 'Failures', 'Retries', 'p50', 'p95', 'Max'];
      fill(list, r.tasks.length ? el('table', {class: 'stats'},
        el('thead', {},
          el('tr', {}, el('th', {rowspan: 2}, 'Task'), el('th', {colspan: 6}, 'Last hour'), el('th', {colspan: 6}, 'Last 24 hours')),
          el('tr', {}, figures.concat(figures).map((h) => el('th', {}, h)))),
        el('tbody', {}, r.tasks.map((t) => el('tr', {}, el('td', {}, t.task), windowCells(t.hour), windowCells(t.day)))))
        : el('p', {class: 'muted'}, 'No task has run in the last 24 hours.'),
      el('p', {class: 'muted'}, 'Of every node, kept by the storage for ', Math.round(r.retention / 3600),
        ' hours. Runs: tasks that returned or failed; retries: failed runs that will run again. ',
        'p50 and p95 are estimated from the buckets of the duration histogram; the max is exact.'));
    });
  }

  // -- queue and schedule -------------------------------------------------------------

  function messageTable(rows, scheduled, refresh) {
    const headers = ['Task', 'Task id', 'Arguments'].concat(scheduled ? ['Due'] : [], ['Priority', 'Retries', 'Revoked']);
    if (!SETTINGS.readOnly) headers.push('');
    return table(headers, rows.map((m) => el('tr', {class: m.revoked ? 'revoked' : null},
      el('td', {}, m.task), el('td', {}, taskLink(m.id)),
      el('td', {class: 'args'}, SETTINGS.showArgs ? m.args : el('span', {class: 'muted'}, 'hidden')),
      scheduled ? el('td', {}, when(m.eta)) : null,
      el('td', {class: 'num'}, m.priority === null ? '-' : m.priority), el('td', {class: 'num'}, m.retries),
      el('td', {}, m.revoked ? 'revoked' : ''),
      SETTINGS.readOnly ? null : el('td', {}, m.revoked
        ? button('Restore', async () => { await post('/api/restore', {id: m.id}); refresh(); })
        : button('Revoke', async () => { await post('/api/revoke', {id: m.id}); refresh(); })))));
  }

  function queue() {
    const queued = el('section');
    const scheduled = el('section');
    fill(main, queued, scheduled);
    const refresh = every(2000, async () => {
      const m = await api('/api/messages');
      if (!changed('messages', m)) return;
      const count = (total, shown) => total > shown ? ' (the first ' + shown + ' of ' + total + ')' : ' (' + total + ')';
      fill(queued, el('h2', {}, 'Queue', count(m.queued, m.queue.length)), m.queue.length
        ? messageTable(m.queue, false, refresh) : el('p', {class: 'muted'}, 'The queue is empty.'));
      fill(scheduled, el('h2', {}, 'Schedule', count(m.scheduled, m.schedule.length)), m.schedule.length
        ? messageTable(m.schedule, true, refresh) : el('p', {class: 'muted'}, 'Nothing is scheduled.'));
    });
    if (!SETTINGS.showArgs) main.append(el('p', {class: 'muted'}, 'Arguments are hidden: start the dashboard with --show-args to show them.'));
  }

  // -- dead letters ---------------------------------------------------------------------

  function deadLetters() {
    const selected = new Set();
    const list = el('div');
    let refresh = null;
    async function act(verb, payload, question) {
      if (question && !window.confirm(question)) return;
      await post('/api/dead-letters/' + verb, payload);
      selected.clear();
      drawn.letters = null;
      refresh();
    }
    const tools = SETTINGS.readOnly ? null : el('div', {class: 'tools'},
      button('Requeue selected', () => act('requeue', {ids: [...selected]})),
      button('Purge selected', () => act('purge', {ids: [...selected]}, 'Delete the ' + selected.size + ' selected dead letter(s) for good?')),
      button('Requeue all', () => act('requeue', {all: true}), {class: 'all'}),
      button('Purge all', () => act('purge', {all: true}, 'Delete every dead letter for good?'), {class: 'all danger'}));
    fill(main, el('h2', {}, 'Dead letters'), tools, list);
    refresh = every(2000, async () => {
      const letters = await api('/api/dead-letters');
      if (!changed('letters', letters)) return;
      const ids = new Set(letters.map((l) => l.id));
      for (const id of [...selected]) if (!ids.has(id)) selected.delete(id);
      if (!letters.length) {
        fill(list, el('p', {class: 'muted'}, 'No dead letters: every message could run.'));
        return;
      }
      const headers = ['Time', 'Task', 'Task id', 'Reason', 'Size'];
      if (!SETTINGS.readOnly) headers.unshift('');
      if (!SETTINGS.readOnly) headers.push('');
      fill(list, table(headers, letters.map((l) => el('tr', {'data-id': l.id},
        SETTINGS.readOnly ? null : el('td', {}, el('input', {type: 'checkbox', 'aria-label': 'select', checked: selected.has(l.id),
          onchange: (e) => { if (e.target.checked) selected.add(l.id); else selected.delete(l.id); }})),
        el('td', {}, when(l.time)), el('td', {}, l.task || '-'), el('td', {}, taskLink(l.task_id)),
        el('td', {class: 'reason'}, l.reason), el('td', {class: 'num'}, l.size + ' B'),
        SETTINGS.readOnly ? null : el('td', {class: 'actions'},
          button('Requeue', () => act('requeue', {ids: [l.id]}), {class: 'requeue'}),
          button('Purge', () => act('purge', {ids: [l.id]}, 'Delete this dead letter for good?'), {class: 'purge'}))))));
    });
  }

  // -- events -----------------------------------------------------------------------------

  function eventRow(e) {
    const detail = e.error ? lastLine(e.traceback) || 'error'
      : e.status === 'retrying' ? 'retries left: ' + e.retries
        : e.execute_time ? 'due ' + when(e.execute_time) : '';
    return el('tr', {class: e.error ? 'error' : null}, el('td', {}, clock(e.received)),
      el('td', {}, el('span', {class: 'status ' + (e.error ? 'bad' : e.status)}, e.status)),
      el('td', {}, e.task || '-'), el('td', {}, taskLink(e.id)),
      el('td', {class: 'num'}, e.duration === null || e.duration === undefined ? '' : e.duration.toFixed(3) + 's'),
      el('td', {class: 'reason'}, detail));
  }

  function events() {
    const task = el('input', {placeholder: 'task name contains', 'aria-label': 'task', size: 24});
    const status = el('select', {'aria-label': 'status'}, el('option', {value: ''}, 'any status'),
      SETTINGS.statuses.map((s) => el('option', {value: s}, s)));
    const rows = el('tbody');
    const note = el('p', {class: 'muted'});
    let seq = 0;
    let generation = 0;  // a filter change makes the answers still on their way stale
    fill(main, el('h2', {}, 'Events'), el('div', {class: 'tools'}, task, status), note,
      el('table', {}, el('thead', {}, el('tr', {}, ['Received', 'Status', 'Task', 'Task id', 'Duration', ''].map((h) => el('th', {}, h)))), rows));
    const refresh = every(1000, async () => {
      const mine = generation;
      const query = new URLSearchParams({after: seq});
      if (task.value.trim()) query.set('task', task.value.trim());
      if (status.value) query.set('status', status.value);
      const r = await api('/api/events?' + query);
      if (mine !== generation) return;
      if (r.seq < seq) rows.replaceChildren();  // the dashboard restarted: its numbers too
      seq = r.seq;
      for (const e of r.events) rows.prepend(eventRow(e));
      while (rows.rows.length > 500) rows.lastChild.remove();
      note.textContent = r.events_on === false ? 'Events are off: ' + r.events_off_reason
        : rows.rows.length ? '' : 'No event since this dashboard started; they appear here as tasks run.';
    });
    const restart = () => { generation += 1; seq = 0; rows.replaceChildren(); refresh(); };
    task.addEventListener('input', restart);
    status.addEventListener('change', restart);
  }

  // -- one task ---------------------------------------------------------------------------

  function field(label, ...value) {
    return [el('dt', {}, label), el('dd', {}, ...value)];
  }

  function task() {
    const path = location.pathname;
    const id = decodeURIComponent(path.slice(path.lastIndexOf('/task/') + 6));
    const refresh = every(2000, async () => {
      const t = await api('/api/task/' + encodeURIComponent(id));
      if (!changed('task', t)) return;
      const actions = SETTINGS.readOnly || !(t.where === 'queued' || t.where === 'scheduled') ? null
        : t.revoked ? button('Restore', async () => { await post('/api/restore', {id: t.id}); refresh(); })
          : button('Revoke', async () => { await post('/api/revoke', {id: t.id}); refresh(); });
      fill(main, 
        el('h2', {}, 'Task ', t.task || '', ' ', el('span', {class: 'state ' + t.state}, t.state), ' ', actions),
        el('dl', {}, field('id', el('span', {class: 'mono'}, t.id)), field('task', t.task || '-'),
          t.running ? field('running', 'on ', t.running.node, ', pool ', t.running.pid, ', worker ', t.running.worker, ', since ', when(t.running.since)) : [],
          t.eta ? field('due', when(t.eta)) : [], t.retries === null ? [] : field('retries left', t.retries),
          field('revoked', t.revoked ? 'yes' : 'no'),
          t.where ? field('arguments', SETTINGS.showArgs ? el('code', {}, t.args) : el('span', {class: 'muted'}, 'hidden (--show-args shows them)')) : []),
        t.result !== null ? [el('h3', {}, 'Result'), el('pre', {}, t.result)] : [],
        t.error !== null ? [el('h3', {}, 'Error'), el('pre', {class: 'error'}, t.error), t.traceback ? el('pre', {class: 'traceback'}, t.traceback) : null] : [],
        el('h3', {}, 'Events seen by this dashboard'),
        t.events.length ? table(['Received', 'Status', 'Task', 'Task id', 'Duration', ''], t.events.slice().reverse().map(eventRow))
          : el('p', {class: 'muted'}, 'None since this dashboard started.'));
    });
  }

  // -- start ---------------------------------------------------------------------------

  for (const link of document.querySelectorAll('[data-nav]')) {
    if (link.dataset.nav === body.dataset.page) link.classList.add('active');
  }
  document.getElementById('find').addEventListener('submit', (e) => {
    e.preventDefault();
    const id = e.target.elements.id.value.trim();
    if (id) location.href = ROOT + '/task/' + encodeURIComponent(id);
  });
  ({overview: overview, stats: stats, queue: queue, 'dead-letters': deadLetters, events: events, task: task})[body.dataset.page]();
})();
