"""A built-in multilingual word list: the vocabulary of the test tokenizers and of synthetic corpora.

20 languages in 13 scripts, so that tests exercise what real multilingual E5 input looks like
(CJK split into characters, accents, right-to-left scripts, Indic combining marks) without
downloading anything. The list is fixed: changing it changes the tiny vocabulary, every
test model's tokenizer, and the synthetic benchmark corpus.
"""

from __future__ import annotations

# fmt: off
_SAMPLE_WORDS: dict[str, list[str]] = {
    "en": ["query", "passage", "the", "a", "of", "and", "to", "in", "is", "for", "on", "with",
           "what", "how", "why", "when", "where", "who", "water", "fire", "earth", "city",
           "country", "house", "school", "book", "music", "science", "history", "language",
           "computer", "weather", "river", "mountain", "people", "time", "year", "day", "good",
           "new", "large", "small", "fast", "learn", "read", "write", "search", "document",
           "model", "vector", "embedding", "London", "Hello", "world"],
    "de": ["Haus", "Wasser", "Stadt", "Land", "Buch", "Schule", "Straße", "Brücke", "Mädchen",
           "Junge", "Frau", "Mann", "Kind", "Zeit", "Jahr", "heute", "morgen", "schön", "groß",
           "klein", "gut", "und", "ist", "nicht", "mit", "für", "über", "Geschichte",
           "Wissenschaft", "Sprache", "Fluss", "Berg", "Suche", "Berlin"],
    "fr": ["maison", "eau", "ville", "pays", "livre", "école", "rue", "pont", "fille", "garçon",
           "femme", "homme", "enfant", "temps", "année", "demain", "beau", "grand", "petit",
           "bon", "et", "est", "pas", "avec", "pour", "très", "déjà", "français", "été",
           "histoire", "langue", "rivière", "montagne", "cœur", "Paris"],
    "es": ["casa", "agua", "ciudad", "país", "libro", "escuela", "calle", "puente", "niña",
           "niño", "mujer", "hombre", "tiempo", "año", "hoy", "mañana", "hermoso", "grande",
           "pequeño", "bueno", "y", "es", "no", "con", "para", "también", "canción", "corazón",
           "historia", "ciencia", "idioma", "río", "montaña", "búsqueda", "Madrid"],
    "it": ["acqua", "città", "paese", "scuola", "strada", "ponte", "ragazza", "ragazzo",
           "donna", "uomo", "bambino", "tempo", "anno", "oggi", "domani", "bello", "piccolo",
           "buono", "perché", "così", "grazie", "Roma"],
    "pt": ["água", "cidade", "coração", "obrigado", "não", "você", "maçã", "pão", "irmão",
           "escola", "Lisboa"],
    "tr": ["ev", "su", "şehir", "ülke", "kitap", "okul", "sokak", "köprü", "kız", "kadın",
           "adam", "çocuk", "zaman", "yıl", "bugün", "yarın", "güzel", "büyük", "küçük", "iyi",
           "ve", "değil", "ile", "için", "teşekkürler", "merhaba", "İstanbul", "arama"],
    "pl": ["dom", "woda", "miasto", "kraj", "książka", "szkoła", "ulica", "most", "dziewczyna",
           "chłopiec", "kobieta", "mężczyzna", "dziecko", "czas", "rok", "dzisiaj", "jutro",
           "piękny", "duży", "mały", "dobry", "dziękuję", "cześć", "źródło", "żółw", "Warszawa"],
    "ru": ["дом", "вода", "город", "страна", "книга", "школа", "улица", "мост", "девочка",
           "мальчик", "женщина", "мужчина", "ребёнок", "время", "год", "сегодня", "завтра",
           "красивый", "большой", "маленький", "хороший", "и", "это", "не", "с", "для",
           "спасибо", "привет", "история", "наука", "язык", "река", "гора", "поиск", "Москва"],
    "uk": ["дякую", "місто", "їжа", "ґанок", "Київ"],
    "el": ["σπίτι", "νερό", "πόλη", "χώρα", "βιβλίο", "σχολείο", "δρόμος", "γέφυρα", "κορίτσι",
           "αγόρι", "γυναίκα", "άντρας", "παιδί", "χρόνος", "σήμερα", "αύριο", "όμορφος",
           "μεγάλος", "μικρός", "καλός", "και", "είναι", "δεν", "με", "για", "ευχαριστώ",
           "γεια", "ιστορία", "επιστήμη", "γλώσσα", "ποτάμι", "βουνό", "Αθήνα"],
    "ar": ["بيت", "ماء", "مدينة", "بلد", "كتاب", "مدرسة", "شارع", "جسر", "بنت", "ولد", "امرأة",
           "رجل", "طفل", "وقت", "سنة", "اليوم", "غدا", "جميل", "كبير", "صغير", "جيد", "هو", "لا",
           "مع", "من", "شكرا", "مرحبا", "تاريخ", "علم", "لغة", "نهر", "جبل", "بحث", "القاهرة"],
    "he": ["בית", "מים", "עיר", "ספר", "שלום", "תודה", "ילד", "אישה", "זמן", "שנה", "היום",
           "מחר", "יפה", "גדול", "קטן", "טוב"],
    "hi": ["घर", "पानी", "शहर", "देश", "किताब", "स्कूल", "सड़क", "पुल", "लड़की", "लड़का", "औरत",
           "आदमी", "बच्चा", "समय", "साल", "आज", "कल", "सुंदर", "बड़ा", "छोटा", "अच्छा", "और",
           "है", "नहीं", "के", "लिए", "धन्यवाद", "नमस्ते", "इतिहास", "विज्ञान", "भाषा", "नदी",
           "पहाड़", "खोज", "दिल्ली"],
    "bn": ["বাড়ি", "জল", "শহর", "বই", "ধন্যবাদ", "ভাষা"],
    "zh": ["水", "火", "城市", "国家", "房子", "学校", "书", "音乐", "科学", "历史", "语言", "电脑",
           "天气", "河", "山", "人", "时间", "年", "今天", "明天", "好", "新", "大", "小", "我",
           "你", "他", "是", "的", "不", "和", "谢谢", "你好", "中国", "北京", "搜索", "文档", "学习"],
    "ja": ["日本", "日本語", "東京", "本", "音楽", "歴史", "言葉", "天気", "川", "時間", "今日",
           "明日", "ありがとう", "こんにちは", "さようなら", "おはよう", "すみません", "はい",
           "いいえ", "食べる", "飲む", "見る", "行く", "大きい", "小さい", "コンピューター",
           "テレビ", "ラーメン", "カメラ", "ホテル", "です", "ます", "私", "猫", "犬", "検索"],
    "ko": ["집", "물", "도시", "나라", "책", "학교", "거리", "다리", "소녀", "소년", "여자", "남자",
           "아이", "시간", "오늘", "내일", "아름다운", "큰", "작은", "좋은", "그리고", "입니다",
           "감사합니다", "안녕하세요", "역사", "과학", "언어", "강", "산", "검색", "한국어", "서울"],
    "vi": ["nhà", "nước", "thành", "phố", "sách", "trường", "cảm", "ơn", "xin", "chào", "Việt",
           "Nam", "tiếng", "người", "hôm", "nay"],
    "th": ["บ้าน", "น้ำ", "เมือง", "หนังสือ", "โรงเรียน", "ขอบคุณ", "สวัสดี", "ภาษา", "ไทย"],
}
# fmt: on


def sample_words() -> list[str]:
    """A built-in multilingual word list (20 languages, 13 scripts), duplicates removed."""
    return list(dict.fromkeys(word for words in _SAMPLE_WORDS.values() for word in words))
