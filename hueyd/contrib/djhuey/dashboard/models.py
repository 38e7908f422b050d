from django.db import models


class Dashboard(models.Model):
    """No table: the admin's entry for the dashboard, and its permissions: ``view`` to look,
    ``change`` to act (revoke, restore, requeue, purge)."""

    class Meta:
        managed = False
        default_permissions = ('view', 'change')
        verbose_name = verbose_name_plural = 'dashboard'
