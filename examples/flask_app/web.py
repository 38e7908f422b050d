"""A Flask app that enqueues tasks from its views and shows their results.

    pip install flask
    hueyd tasks.huey -w 2 &              # the daemon, in this directory
    flask --app web run                  # then open http://127.0.0.1:5000/

POST /tasks (a form, or JSON) enqueues a task and answers at once with its id;
GET /tasks/<id> shows its state: pending, done (with the result) or failed.
"""
from flask import Flask, jsonify, redirect, render_template_string, request, url_for

from hueyd import TaskException
from tasks import count_words, divide, huey, slow_square

app = Flask(__name__)

TASKS = {
    'count_words': lambda form: count_words(form.get('text', '')),
    'slow_square': lambda form: slow_square(int(form.get('n', 0)), float(form.get('seconds', 1))),
    'divide': lambda form: divide(float(form.get('a', 0)), float(form.get('b', 0))),
}

PAGE = """<!doctype html>
<title>hueyd + Flask</title>
{% if task_id %}<meta http-equiv="refresh" content="1">{% endif %}
<h1>hueyd + Flask</h1>
{% if task_id %}
  <p>Task <code>{{ task_id }}</code>: <strong>{{ state }}</strong>
  {% if state == 'done' %}<pre>{{ result }}</pre>{% endif %}
  {% if state == 'failed' %}<pre>{{ error }}</pre>{% endif %}
  {% if state == 'pending' %}(this page refreshes every second){% endif %}</p>
  <p><a href="{{ url_for('index') }}">Enqueue another</a></p>
{% else %}
<form method="post" action="{{ url_for('enqueue') }}">
  <input type="hidden" name="task" value="count_words">
  <textarea name="text" rows="4" cols="50">the quick brown fox</textarea>
  <button>Count words in the background</button>
</form>
<form method="post" action="{{ url_for('enqueue') }}">
  <input type="hidden" name="task" value="slow_square">
  <input name="n" value="12" size="4"> squared, taking
  <input name="seconds" value="3" size="3"> seconds <button>Enqueue</button>
</form>
{% endif %}
"""


def task_state(task_id):
    """('pending' | 'done' | 'failed', result, error) of a task, leaving its result stored."""
    try:
        result = huey.result(task_id, preserve=True)
    except TaskException as exc:
        return 'failed', None, exc.metadata.get('error')
    if result is None:
        return 'pending', None, None
    return 'done', result, None


@app.get('/')
def index():
    return render_template_string(PAGE, task_id=None)


@app.post('/tasks')
def enqueue():
    form = request.get_json(silent=True) or request.form
    start = TASKS.get(form.get('task'))
    if start is None:
        return jsonify(error='unknown task %r; choose one of %s'
                       % (form.get('task'), ', '.join(TASKS))), 400
    result = start(form)  # enqueued: returns at once
    if request.is_json:
        return jsonify(id=result.id, url=url_for('show', task_id=result.id)), 202
    return redirect(url_for('show', task_id=result.id))


@app.get('/tasks/<task_id>')
def show(task_id):
    state, result, error = task_state(task_id)
    if request.accept_mimetypes.best == 'application/json' or request.args.get('format') == 'json':
        return jsonify(id=task_id, state=state, result=result, error=error)
    return render_template_string(PAGE, task_id=task_id, state=state, result=result, error=error)
