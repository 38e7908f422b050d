"""hueyd's dashboard as a section of Django's admin, guarded by Django's login and permissions.

``'hueyd.contrib.djhuey.dashboard'`` in INSTALLED_APPS (with ``django.contrib.admin``) puts
"Task queue > Dashboard" on the admin's index, and serves the dashboard of ``djhuey.HUEY``
under it (``/admin/hueyd_dashboard/dashboard/``): no URL to add. See docs/dashboard.md.
Needs Starlette: ``pip install 'hueyd[dashboard]'``.
"""
