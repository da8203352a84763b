"""The verification schema's migration steps, vNNNN_what.py each (see storage/common/migrations.py)."""
