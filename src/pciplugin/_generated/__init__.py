"""Code generated from proto/ by proto/generate.sh; do not edit by hand."""
