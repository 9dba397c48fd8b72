"""A fraud-scoring service that keeps answering while its primary model is down."""
