"""The plan: the user's declaration of assets, repositories and policies."""
