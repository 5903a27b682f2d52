"""URLs of the test project."""

from django.urls import path

from . import views

urlpatterns = [
    path("probe/", views.probe),
    path("nocache/", views.nocache),
    path("aprobe/", views.aprobe),
    path("together/", views.together),
    path("atogether/", views.atogether),
]
