"""The admission webhook for ``PCIDeviceClaim``: refuse claims that can only fail, record who asked.

The adapters around the pure rules of `pcicore.admission`: `facts` reads what a decision needs
from the cluster, `admission` turns a request into domain values and asks the rules, `review`
is the AdmissionReview wire form, `server` serves both webhooks over TLS.
"""
