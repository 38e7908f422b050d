"""The shop's background jobs: tasks, a periodic task, a pipeline, a chord and a lock."""
from hueyd import chord, crontab
from hueyd.contrib.djhuey import HUEY, db_periodic_task, lock_task, task

PRICES = {'apple': 3, 'pear': 4, 'plum': 2}


@task()
def price(item, quantity):
    """One line of an order: what it costs."""
    return PRICES[item] * quantity


@task()
def total(line_prices):
    """The chord's callback: the order's total, from every line's price in order."""
    return sum(line_prices)


# The pipeline's stages: each one's return value is appended to the next one's arguments.
@task()
def reserve(order_id):
    return 'order %s reserved' % order_id


@task()
def charge(amount, reservation):
    return '%s, charged %s' % (reservation, amount)


@task()
@lock_task('shipping-desk')
def ship(receipt):
    """Only one worker at the shipping desk at a time."""
    return '%s, shipped' % receipt


@db_periodic_task(crontab(minute='0', hour='3'))
def nightly_report():
    """Every night at 03:00 (UTC): one line for the log."""
    return 'report for %d products' % len(PRICES)


def place_order(order_id, lines):
    """Price the lines in parallel (a chord), then reserve, charge and ship (a pipeline).

    Returns the chord's result and the pipeline's results.
    """
    order_total = HUEY.enqueue(chord([price.s(item, qty) for item, qty in lines], total.s()))
    amount = order_total.get(blocking=True, timeout=30)
    fulfilment = reserve.s(order_id).then(charge, amount).then(ship)
    return amount, HUEY.enqueue(fulfilment)
