from __future__ import annotations

from rest_framework.routers import SimpleRouter

from campaigns.api.views import EmailTemplateViewSet

router = SimpleRouter(trailing_slash=False)
router.register("email-templates", EmailTemplateViewSet, basename="email-template")

urlpatterns = router.urls
