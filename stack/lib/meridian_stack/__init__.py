"""The example stack meridian deploys: an inference service and a knowledge-base
service, written for a bare host with only python3 (standard library)."""
