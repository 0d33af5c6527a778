"""The scheduler process: releases due messages and repairs what crashes left behind."""
