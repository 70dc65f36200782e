"""The admission webhook for ``PCIDeviceClaim``: refuse claims that can only fail, record who asked.

`rules` decides (pure); `facts` reads what a decision needs from the cluster; `review` is the
AdmissionReview wire form; `server` serves both webhooks over TLS.
"""
