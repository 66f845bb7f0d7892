"""models/molmo2"""
