"""Policy, pure Python (no kernel): what to protect and how; compiled to map
contents by the shield."""
