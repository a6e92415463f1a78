#!/usr/bin/env python3
"""Generate the small multilingual sample corpus in samples/corpus/.

Deterministic: the same script produces the same rows (and, for a given
pyarrow version, the same bytes).  Run from anywhere:

    python samples/make_corpus.py            # (re)write samples/corpus/
    python samples/make_corpus.py --check    # verify the committed files match

The text is original: six everyday topics (spring weather, the city library,
baking bread, train travel, a password-reset help-desk answer, recycling),
four sentences each, written in 15 languages.  The topics are parallel across
languages, which makes cross-lingual retrieval checks possible (a German
library document should be near the Japanese library documents).  A document
is 1-4 consecutive sentences of one topic in one language.

Output: 4 shards, columns id (int64, unique), text (string), lang (ISO 639-1):
    part-0000.parquet, part-0001.parquet, part-0002.jsonl, part-0003.jsonl.gz
part-0002.jsonl additionally holds three deliberately bad rows (null text,
empty text, null id) that a robust job must reject and count.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import random
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

OUT_DIR = Path(__file__).resolve().parent / "corpus"
DOCS_PER_LANG = 22
SEED = "e5ray-samples-v1"
PARQUET_ROW_GROUP_SIZE = 32  # several row groups per parquet shard

TOPICS = ("weather", "library", "bread", "train", "password", "recycling")

# LANGS[lang] = six topics x four sentences, in TOPICS order.
LANGS: dict[str, list[list[str]]] = {
    "en": [
        [
            "Spring in the northern hemisphere begins in March, when the days grow noticeably longer.",
            "Light rain is common in April, so many people carry a small umbrella.",
            "By late May, temperatures in most of Europe rise above twenty degrees.",
            "Gardeners usually wait until the last frost has passed before planting tomatoes.",
        ],
        [
            "The city library is open from nine in the morning until eight in the evening on weekdays.",
            "Members can borrow up to ten books at a time for three weeks.",
            "Overdue items can be renewed online unless another reader has reserved them.",
            "The reading room on the second floor is reserved for quiet study.",
        ],
        [
            "Simple bread needs only flour, water, salt and yeast.",
            "The dough should rest in a warm place until it has doubled in size.",
            "Most loaves bake for about forty minutes in a hot oven.",
            "Bread stays fresh longer when it is stored in a cloth bag rather than in plastic.",
        ],
        [
            "The express train to the capital leaves every hour from platform three.",
            "Tickets bought online are cheaper than those bought at the station.",
            "Passengers with a bicycle must book a separate place in advance.",
            "In case of a delay of more than one hour, travellers can claim a partial refund.",
        ],
        [
            'To reset your password, click "Forgot password" on the login page.',
            "We will send a confirmation link to the email address linked to your account.",
            "The link is valid for twenty-four hours and can be used only once.",
            "If you do not receive the email, please check your spam folder before contacting support.",
        ],
        [
            "Paper, glass and plastic are collected separately in our neighbourhood.",
            "Glass bottles should be rinsed and sorted by colour.",
            "Batteries and old electronics must never go into household waste.",
            "The recycling centre near the park accepts bulky items on Saturdays.",
        ],
    ],
    "de": [
        [
            "Der Frühling beginnt auf der Nordhalbkugel im März, wenn die Tage spürbar länger werden.",
            "Im April regnet es oft leicht, deshalb haben viele Menschen einen kleinen Regenschirm dabei.",
            "Ende Mai steigen die Temperaturen in den meisten Teilen Europas auf über zwanzig Grad.",
            "Hobbygärtner warten meist, bis der letzte Frost vorbei ist, bevor sie Tomaten pflanzen.",
        ],
        [
            "Die Stadtbibliothek ist werktags von neun Uhr morgens bis acht Uhr abends geöffnet.",
            "Mitglieder können bis zu zehn Bücher gleichzeitig für drei Wochen ausleihen.",
            "Überfällige Medien lassen sich online verlängern, sofern sie nicht von einer anderen Person vorgemerkt sind.",
            "Der Lesesaal im zweiten Stock ist für ruhiges Lernen vorgesehen.",
        ],
        [
            "Für ein einfaches Brot braucht man nur Mehl, Wasser, Salz und Hefe.",
            "Der Teig sollte an einem warmen Ort ruhen, bis sich sein Volumen verdoppelt hat.",
            "Die meisten Brote backen etwa vierzig Minuten in einem heißen Ofen.",
            "Brot bleibt länger frisch, wenn man es in einem Stoffbeutel statt in Plastik aufbewahrt.",
        ],
        [
            "Der Schnellzug in die Hauptstadt fährt stündlich von Gleis drei ab.",
            "Online gekaufte Fahrkarten sind günstiger als Fahrkarten vom Schalter.",
            "Reisende mit Fahrrad müssen vorab einen eigenen Stellplatz reservieren.",
            "Bei einer Verspätung von mehr als einer Stunde können Fahrgäste eine teilweise Erstattung beantragen.",
        ],
        [
            "Um Ihr Passwort zurückzusetzen, klicken Sie auf der Anmeldeseite auf „Passwort vergessen“.",
            "Wir senden einen Bestätigungslink an die E-Mail-Adresse, die mit Ihrem Konto verknüpft ist.",
            "Der Link ist vierundzwanzig Stunden gültig und kann nur einmal verwendet werden.",
            "Falls Sie keine E-Mail erhalten, prüfen Sie bitte Ihren Spam-Ordner, bevor Sie den Support kontaktieren.",
        ],
        [
            "In unserem Viertel werden Papier, Glas und Kunststoff getrennt gesammelt.",
            "Glasflaschen sollten ausgespült und nach Farben sortiert werden.",
            "Batterien und alte Elektrogeräte gehören niemals in den Hausmüll.",
            "Der Wertstoffhof beim Park nimmt samstags Sperrmüll an.",
        ],
    ],
    "fr": [
        [
            "Dans l'hémisphère nord, le printemps commence en mars, lorsque les jours rallongent nettement.",
            "Les petites pluies sont fréquentes en avril, c'est pourquoi beaucoup de gens emportent un petit parapluie.",
            "Fin mai, les températures dépassent vingt degrés dans la plupart des régions d'Europe.",
            "Les jardiniers attendent généralement la fin des dernières gelées avant de planter les tomates.",
        ],
        [
            "La bibliothèque municipale est ouverte en semaine de neuf heures à vingt heures.",
            "Les abonnés peuvent emprunter jusqu'à dix livres à la fois pendant trois semaines.",
            "Les documents en retard peuvent être prolongés en ligne, sauf s'ils ont été réservés par un autre lecteur.",
            "La salle de lecture du deuxième étage est réservée au travail silencieux.",
        ],
        [
            "Un pain simple ne demande que de la farine, de l'eau, du sel et de la levure.",
            "La pâte doit reposer dans un endroit chaud jusqu'à ce qu'elle ait doublé de volume.",
            "La plupart des pains cuisent environ quarante minutes dans un four chaud.",
            "Le pain reste frais plus longtemps dans un sac en tissu que dans du plastique.",
        ],
        [
            "Le train express pour la capitale part toutes les heures du quai numéro trois.",
            "Les billets achetés en ligne sont moins chers que ceux achetés en gare.",
            "Les voyageurs avec un vélo doivent réserver une place à l'avance.",
            "En cas de retard de plus d'une heure, les voyageurs peuvent demander un remboursement partiel.",
        ],
        [
            "Pour réinitialiser votre mot de passe, cliquez sur « Mot de passe oublié » sur la page de connexion.",
            "Nous enverrons un lien de confirmation à l'adresse e-mail associée à votre compte.",
            "Le lien est valable vingt-quatre heures et ne peut être utilisé qu'une seule fois.",
            "Si vous ne recevez pas l'e-mail, vérifiez votre dossier de courrier indésirable avant de contacter l'assistance.",
        ],
        [
            "Dans notre quartier, le papier, le verre et le plastique sont collectés séparément.",
            "Les bouteilles en verre doivent être rincées et triées par couleur.",
            "Les piles et les vieux appareils électroniques ne doivent jamais être jetés avec les ordures ménagères.",
            "La déchetterie située près du parc accepte les encombrants le samedi.",
        ],
    ],
    "es": [
        [
            "En el hemisferio norte, la primavera empieza en marzo, cuando los días se alargan de forma notable.",
            "En abril son habituales las lluvias ligeras, por eso mucha gente lleva un paraguas pequeño.",
            "A finales de mayo, las temperaturas superan los veinte grados en la mayor parte de Europa.",
            "Los aficionados a la jardinería suelen esperar a que pasen las últimas heladas antes de plantar tomates.",
        ],
        [
            "La biblioteca municipal abre de lunes a viernes de nueve de la mañana a ocho de la tarde.",
            "Los socios pueden tomar prestados hasta diez libros a la vez durante tres semanas.",
            "Los préstamos vencidos se pueden renovar por internet, salvo que otro lector los haya reservado.",
            "La sala de lectura de la segunda planta está reservada para el estudio en silencio.",
        ],
        [
            "Para hacer un pan sencillo solo se necesitan harina, agua, sal y levadura.",
            "La masa debe reposar en un lugar cálido hasta que doble su volumen.",
            "La mayoría de los panes se hornean unos cuarenta minutos en el horno bien caliente.",
            "El pan se conserva fresco más tiempo en una bolsa de tela que en una de plástico.",
        ],
        [
            "El tren rápido a la capital sale cada hora desde el andén tres.",
            "Los billetes comprados por internet son más baratos que los que se compran en la estación.",
            "Los pasajeros que viajan con bicicleta deben reservar una plaza aparte con antelación.",
            "Si el retraso supera una hora, los viajeros pueden solicitar un reembolso parcial.",
        ],
        [
            "Para restablecer su contraseña, haga clic en «¿Olvidó su contraseña?» en la página de inicio de sesión.",
            "Le enviaremos un enlace de confirmación a la dirección de correo electrónico vinculada a su cuenta.",
            "El enlace es válido durante veinticuatro horas y solo se puede usar una vez.",
            "Si no recibe el correo, revise la carpeta de spam antes de ponerse en contacto con el servicio de asistencia.",
        ],
        [
            "En nuestro barrio, el papel, el vidrio y el plástico se recogen por separado.",
            "Las botellas de vidrio deben enjuagarse y separarse por colores.",
            "Las pilas y los aparatos electrónicos viejos nunca deben tirarse a la basura doméstica.",
            "El punto limpio que hay junto al parque acepta muebles y objetos voluminosos los sábados.",
        ],
    ],
    "it": [
        [
            "Nell'emisfero settentrionale la primavera inizia a marzo, quando le giornate si allungano sensibilmente.",
            "Ad aprile le piogge leggere sono frequenti, perciò molte persone portano con sé un piccolo ombrello.",
            "A fine maggio le temperature superano i venti gradi in gran parte d'Europa.",
            "Chi coltiva l'orto di solito aspetta che siano passate le ultime gelate prima di piantare i pomodori.",
        ],
        [
            "La biblioteca comunale è aperta nei giorni feriali dalle nove del mattino alle otto di sera.",
            "Gli iscritti possono prendere in prestito fino a dieci libri alla volta per tre settimane.",
            "I prestiti scaduti si possono rinnovare online, a meno che un altro lettore non li abbia prenotati.",
            "La sala di lettura al secondo piano è riservata allo studio in silenzio.",
        ],
        [
            "Per un pane semplice bastano farina, acqua, sale e lievito.",
            "L'impasto deve riposare in un luogo caldo finché non raddoppia di volume.",
            "La maggior parte delle pagnotte cuoce circa quaranta minuti in forno ben caldo.",
            "Il pane si mantiene fresco più a lungo in un sacchetto di stoffa che nella plastica.",
        ],
        [
            "Il treno veloce per la capitale parte ogni ora dal binario tre.",
            "I biglietti acquistati online costano meno di quelli comprati in stazione.",
            "Chi viaggia con la bicicletta deve prenotare un posto apposito in anticipo.",
            "In caso di ritardo superiore a un'ora, i viaggiatori possono chiedere un rimborso parziale.",
        ],
        [
            'Per reimpostare la password, fai clic su "Password dimenticata" nella pagina di accesso.',
            "Invieremo un link di conferma all'indirizzo email associato al tuo account.",
            "Il link è valido per ventiquattro ore e può essere usato una sola volta.",
            "Se non ricevi l'email, controlla la cartella dello spam prima di contattare l'assistenza.",
        ],
        [
            "Nel nostro quartiere carta, vetro e plastica vengono raccolti separatamente.",
            "Le bottiglie di vetro vanno sciacquate e divise per colore.",
            "Pile e vecchi apparecchi elettronici non vanno mai gettati nei rifiuti domestici.",
            "L'isola ecologica vicino al parco accetta i rifiuti ingombranti il sabato.",
        ],
    ],
    "pt": [
        [
            "No hemisfério norte, a primavera começa em março, quando os dias ficam visivelmente mais longos.",
            "Chuvas leves são comuns em abril, por isso muita gente leva um guarda-chuva pequeno.",
            "No fim de maio, as temperaturas passam dos vinte graus na maior parte da Europa.",
            "Quem cuida de horta costuma esperar a última geada passar antes de plantar tomates.",
        ],
        [
            "A biblioteca municipal funciona em dias úteis das nove da manhã às oito da noite.",
            "Os sócios podem pegar emprestados até dez livros de uma vez, por três semanas.",
            "Empréstimos atrasados podem ser renovados pela internet, a menos que outro leitor os tenha reservado.",
            "A sala de leitura do segundo andar é reservada para estudo em silêncio.",
        ],
        [
            "Um pão simples leva apenas farinha, água, sal e fermento.",
            "A massa deve descansar em um lugar quente até dobrar de volume.",
            "A maioria dos pães assa por cerca de quarenta minutos em forno quente.",
            "O pão continua fresco por mais tempo quando guardado em um saco de pano, e não de plástico.",
        ],
        [
            "O trem expresso para a capital sai de hora em hora da plataforma três.",
            "As passagens compradas pela internet são mais baratas do que as compradas na estação.",
            "Passageiros com bicicleta precisam reservar um lugar separado com antecedência.",
            "Em caso de atraso de mais de uma hora, os viajantes podem pedir reembolso parcial.",
        ],
        [
            'Para redefinir sua senha, clique em "Esqueci minha senha" na página de login.',
            "Enviaremos um link de confirmação para o e-mail vinculado à sua conta.",
            "O link vale por vinte e quatro horas e só pode ser usado uma vez.",
            "Se você não receber o e-mail, verifique a pasta de spam antes de entrar em contato com o suporte.",
        ],
        [
            "No nosso bairro, papel, vidro e plástico são coletados separadamente.",
            "As garrafas de vidro devem ser enxaguadas e separadas por cor.",
            "Pilhas e aparelhos eletrônicos velhos nunca devem ir para o lixo doméstico.",
            "O ecoponto perto do parque recebe objetos volumosos aos sábados.",
        ],
    ],
    "ru": [
        [
            "В Северном полушарии весна начинается в марте, когда дни становятся заметно длиннее.",
            "В апреле часто идут небольшие дожди, поэтому многие носят с собой маленький зонт.",
            "К концу мая в большей части Европы температура поднимается выше двадцати градусов.",
            "Садоводы обычно ждут, пока пройдут последние заморозки, и только потом высаживают помидоры.",
        ],
        [
            "Городская библиотека работает по будням с девяти утра до восьми вечера.",
            "Читатели могут взять одновременно до десяти книг на три недели.",
            "Просроченные книги можно продлить онлайн, если их не забронировал другой читатель.",
            "Читальный зал на втором этаже предназначен для тихой работы.",
        ],
        [
            "Для простого хлеба нужны только мука, вода, соль и дрожжи.",
            "Тесто должно постоять в тёплом месте, пока не увеличится вдвое.",
            "Большинство буханок выпекается около сорока минут в горячей духовке.",
            "Хлеб дольше остаётся свежим в тканевом мешочке, чем в пластиковом пакете.",
        ],
        [
            "Скорый поезд до столицы отправляется каждый час с третьей платформы.",
            "Билеты, купленные онлайн, дешевле, чем билеты в кассе вокзала.",
            "Пассажиры с велосипедом должны заранее забронировать для него отдельное место.",
            "При задержке более чем на час пассажиры могут потребовать частичный возврат стоимости билета.",
        ],
        [
            "Чтобы сбросить пароль, нажмите «Забыли пароль?» на странице входа.",
            "Мы отправим ссылку для подтверждения на адрес электронной почты, привязанный к вашей учётной записи.",
            "Ссылка действительна двадцать четыре часа и может быть использована только один раз.",
            "Если письмо не пришло, проверьте папку «Спам», прежде чем обращаться в службу поддержки.",
        ],
        [
            "В нашем районе бумагу, стекло и пластик собирают раздельно.",
            "Стеклянные бутылки нужно ополоснуть и рассортировать по цвету.",
            "Батарейки и старую электронику ни в коем случае нельзя выбрасывать вместе с бытовым мусором.",
            "Пункт приёма вторсырья возле парка по субботам принимает крупногабаритные вещи.",
        ],
    ],
    "el": [
        [
            "Στο βόρειο ημισφαίριο η άνοιξη αρχίζει τον Μάρτιο, όταν οι μέρες μεγαλώνουν αισθητά.",
            "Τον Απρίλιο οι ψιχάλες είναι συχνές, γι' αυτό πολλοί κουβαλούν μαζί τους μια μικρή ομπρέλα.",
            "Στα τέλη Μαΐου η θερμοκρασία ξεπερνά τους είκοσι βαθμούς στο μεγαλύτερο μέρος της Ευρώπης.",
            "Όσοι έχουν κήπο συνήθως περιμένουν να περάσει ο τελευταίος παγετός πριν φυτέψουν ντομάτες.",
        ],
        [
            "Η δημοτική βιβλιοθήκη είναι ανοιχτή τις καθημερινές από τις εννέα το πρωί έως τις οκτώ το βράδυ.",
            "Τα μέλη μπορούν να δανειστούν έως δέκα βιβλία κάθε φορά για τρεις εβδομάδες.",
            "Τα εκπρόθεσμα δάνεια ανανεώνονται ηλεκτρονικά, εκτός αν τα έχει κρατήσει άλλος αναγνώστης.",
            "Το αναγνωστήριο στον δεύτερο όροφο προορίζεται για αθόρυβη μελέτη.",
        ],
        [
            "Για ένα απλό ψωμί χρειάζονται μόνο αλεύρι, νερό, αλάτι και μαγιά.",
            "Η ζύμη πρέπει να ξεκουραστεί σε ζεστό μέρος μέχρι να διπλασιαστεί σε όγκο.",
            "Τα περισσότερα καρβέλια ψήνονται περίπου σαράντα λεπτά σε καυτό φούρνο.",
            "Το ψωμί μένει φρέσκο περισσότερο όταν φυλάγεται σε υφασμάτινη σακούλα αντί για πλαστική.",
        ],
        [
            "Το ταχύ τρένο για την πρωτεύουσα αναχωρεί κάθε ώρα από την αποβάθρα τρία.",
            "Τα εισιτήρια που αγοράζονται ηλεκτρονικά είναι φθηνότερα από εκείνα του σταθμού.",
            "Οι επιβάτες με ποδήλατο πρέπει να κλείσουν εκ των προτέρων ξεχωριστή θέση.",
            "Σε περίπτωση καθυστέρησης άνω της μίας ώρας, οι επιβάτες μπορούν να ζητήσουν μερική επιστροφή χρημάτων.",
        ],
        [
            "Για να επαναφέρετε τον κωδικό πρόσβασης, πατήστε «Ξέχασα τον κωδικό» στη σελίδα σύνδεσης.",
            "Θα στείλουμε έναν σύνδεσμο επιβεβαίωσης στη διεύθυνση email που είναι συνδεδεμένη με τον λογαριασμό σας.",
            "Ο σύνδεσμος ισχύει για είκοσι τέσσερις ώρες και μπορεί να χρησιμοποιηθεί μόνο μία φορά.",
            "Αν δεν λάβετε το email, ελέγξτε τον φάκελο ανεπιθύμητης αλληλογραφίας πριν επικοινωνήσετε με την υποστήριξη.",
        ],
        [
            "Στη γειτονιά μας το χαρτί, το γυαλί και το πλαστικό συλλέγονται χωριστά.",
            "Τα γυάλινα μπουκάλια πρέπει να ξεπλένονται και να χωρίζονται ανά χρώμα.",
            "Οι μπαταρίες και οι παλιές ηλεκτρονικές συσκευές δεν πρέπει ποτέ να πετιούνται στα οικιακά απορρίμματα.",
            "Το κέντρο ανακύκλωσης κοντά στο πάρκο δέχεται ογκώδη αντικείμενα τα Σάββατα.",
        ],
    ],
    "ar": [
        [
            "يبدأ الربيع في نصف الكرة الشمالي في شهر مارس، حين تطول الأيام بشكل ملحوظ.",
            "تكثر الأمطار الخفيفة في أبريل، لذلك يحمل كثير من الناس مظلة صغيرة.",
            "بحلول أواخر مايو ترتفع درجات الحرارة فوق عشرين درجة في معظم أنحاء أوروبا.",
            "ينتظر هواة البستنة عادةً انتهاء آخر موجة صقيع قبل زراعة الطماطم.",
        ],
        [
            "تفتح مكتبة المدينة أبوابها أيام الأسبوع من التاسعة صباحاً حتى الثامنة مساءً.",
            "يمكن للأعضاء استعارة ما يصل إلى عشرة كتب في المرة الواحدة لمدة ثلاثة أسابيع.",
            "يمكن تجديد الإعارات المتأخرة عبر الإنترنت ما لم يحجزها قارئ آخر.",
            "قاعة المطالعة في الطابق الثاني مخصصة للدراسة الهادئة.",
        ],
        [
            "لا يحتاج الخبز البسيط إلا إلى الدقيق والماء والملح والخميرة.",
            "يجب أن يرتاح العجين في مكان دافئ حتى يتضاعف حجمه.",
            "يُخبز معظم أرغفة الخبز نحو أربعين دقيقة في فرن ساخن.",
            "يبقى الخبز طازجاً مدة أطول إذا حُفظ في كيس من القماش بدلاً من البلاستيك.",
        ],
        [
            "يغادر القطار السريع المتجه إلى العاصمة كل ساعة من الرصيف رقم ثلاثة.",
            "التذاكر التي تُشترى عبر الإنترنت أرخص من تلك التي تُشترى في المحطة.",
            "على الركاب الذين يصطحبون دراجة هوائية حجز مكان منفصل لها مسبقاً.",
            "في حال تأخر القطار أكثر من ساعة، يحق للمسافرين المطالبة باسترداد جزء من ثمن التذكرة.",
        ],
        [
            "لإعادة تعيين كلمة المرور، انقر على «نسيت كلمة المرور» في صفحة تسجيل الدخول.",
            "سنرسل رابط تأكيد إلى عنوان البريد الإلكتروني المرتبط بحسابك.",
            "الرابط صالح لمدة أربع وعشرين ساعة ولا يمكن استخدامه إلا مرة واحدة.",
            "إذا لم تصلك الرسالة، فيرجى التحقق من مجلد البريد العشوائي قبل التواصل مع الدعم الفني.",
        ],
        [
            "يُجمع الورق والزجاج والبلاستيك بشكل منفصل في حيّنا.",
            "ينبغي شطف الزجاجات وفرزها حسب اللون.",
            "لا يجوز أبداً رمي البطاريات والأجهزة الإلكترونية القديمة مع النفايات المنزلية.",
            "يستقبل مركز إعادة التدوير القريب من الحديقة الأغراض الكبيرة أيام السبت.",
        ],
    ],
    "hi": [
        [
            "उत्तरी गोलार्ध में वसंत मार्च में शुरू होता है, जब दिन काफ़ी लंबे होने लगते हैं।",
            "अप्रैल में हल्की बारिश आम है, इसलिए बहुत से लोग अपने साथ छोटा छाता रखते हैं।",
            "मई के आख़िर तक यूरोप के ज़्यादातर हिस्सों में तापमान बीस डिग्री से ऊपर चला जाता है।",
            "बागवानी करने वाले लोग आम तौर पर आख़िरी पाला बीत जाने के बाद ही टमाटर लगाते हैं।",
        ],
        [
            "शहर का पुस्तकालय सोमवार से शुक्रवार सुबह नौ बजे से रात आठ बजे तक खुला रहता है।",
            "सदस्य एक बार में तीन हफ़्तों के लिए दस किताबें तक उधार ले सकते हैं।",
            "देर से लौटाई जाने वाली किताबों की अवधि ऑनलाइन बढ़ाई जा सकती है, बशर्ते किसी दूसरे पाठक ने उन्हें आरक्षित न किया हो।",
            "दूसरी मंज़िल का वाचनालय शांत पढ़ाई के लिए है।",
        ],
        [
            "सादी ब्रेड बनाने के लिए सिर्फ़ आटा, पानी, नमक और ख़मीर चाहिए।",
            "गुँधे हुए आटे को किसी गर्म जगह पर तब तक रखना चाहिए जब तक वह फूलकर दोगुना न हो जाए।",
            "ज़्यादातर ब्रेड गर्म ओवन में लगभग चालीस मिनट में पकती है।",
            "ब्रेड प्लास्टिक की बजाय कपड़े की थैली में रखने पर ज़्यादा देर तक ताज़ा रहती है।",
        ],
        [
            "राजधानी जाने वाली एक्सप्रेस ट्रेन हर घंटे प्लेटफ़ॉर्म नंबर तीन से छूटती है।",
            "ऑनलाइन ख़रीदे गए टिकट स्टेशन पर ख़रीदे गए टिकटों से सस्ते होते हैं।",
            "साइकिल के साथ यात्रा करने वालों को पहले से अलग जगह बुक करनी होती है।",
            "एक घंटे से ज़्यादा की देरी होने पर यात्री किराए का कुछ हिस्सा वापस माँग सकते हैं।",
        ],
        [
            'अपना पासवर्ड रीसेट करने के लिए लॉगिन पेज पर "पासवर्ड भूल गए" पर क्लिक करें।',
            "हम आपके खाते से जुड़े ईमेल पते पर एक पुष्टि लिंक भेजेंगे।",
            "यह लिंक चौबीस घंटे तक मान्य है और केवल एक बार इस्तेमाल किया जा सकता है।",
            "अगर ईमेल न मिले, तो सहायता टीम से संपर्क करने से पहले अपना स्पैम फ़ोल्डर देख लें।",
        ],
        [
            "हमारे मोहल्ले में काग़ज़, काँच और प्लास्टिक अलग-अलग इकट्ठा किए जाते हैं।",
            "काँच की बोतलों को धोकर रंग के हिसाब से अलग करना चाहिए।",
            "बैटरियाँ और पुराने इलेक्ट्रॉनिक उपकरण कभी भी घरेलू कचरे में नहीं डालने चाहिए।",
            "पार्क के पास वाला रीसाइक्लिंग केंद्र शनिवार को बड़ा सामान स्वीकार करता है।",
        ],
    ],
    "zh": [
        [
            "在北半球，春天从三月开始，这时白天明显变长。",
            "四月常下小雨，所以很多人随身带一把小伞。",
            "到五月下旬，欧洲大部分地区的气温都会升到二十度以上。",
            "种菜的人通常要等最后一场霜冻过去之后再种西红柿。",
        ],
        [
            "市图书馆工作日的开放时间是早上九点到晚上八点。",
            "读者每次最多可以借十本书，借期三周。",
            "逾期的图书可以在网上续借，除非已有其他读者预约。",
            "二楼的阅览室专供安静学习使用。",
        ],
        [
            "做一个简单的面包只需要面粉、水、盐和酵母。",
            "面团要放在温暖的地方发酵，直到体积变为原来的两倍。",
            "大多数面包在预热好的烤箱里烤大约四十分钟。",
            "面包放在布袋里比放在塑料袋里保鲜时间更长。",
        ],
        [
            "开往首都的快车每小时从三号站台发车一班。",
            "网上购买的车票比在车站购买的便宜。",
            "携带自行车的乘客必须提前另外预订位置。",
            "如果列车晚点超过一小时，乘客可以申请部分退款。",
        ],
        [
            "如需重置密码，请在登录页面点击“忘记密码”。",
            "我们会向与您账户绑定的电子邮箱发送一个确认链接。",
            "该链接在二十四小时内有效，并且只能使用一次。",
            "如果没有收到邮件，请先检查垃圾邮件文件夹，再联系客服。",
        ],
        [
            "在我们小区，纸张、玻璃和塑料是分开回收的。",
            "玻璃瓶应先冲洗干净，再按颜色分类。",
            "电池和旧电子产品绝不能扔进生活垃圾。",
            "公园附近的回收站每周六接收大件物品。",
        ],
    ],
    "ja": [
        [
            "北半球では春は三月に始まり、日がはっきりと長くなってきます。",
            "四月は小雨が多いので、小さな傘を持ち歩く人がたくさんいます。",
            "五月の終わりには、ヨーロッパの大部分で気温が二十度を超えます。",
            "家庭菜園をする人は、たいてい最後の霜が終わってからトマトを植えます。",
        ],
        [
            "市立図書館の開館時間は、平日の午前九時から午後八時までです。",
            "利用者は一度に十冊まで、三週間借りることができます。",
            "返却期限を過ぎた資料も、ほかの利用者の予約がなければオンラインで延長できます。",
            "二階の閲覧室は静かに勉強するための部屋です。",
        ],
        [
            "シンプルなパンに必要なのは、小麦粉、水、塩、イーストだけです。",
            "生地は暖かい場所で、二倍の大きさにふくらむまで休ませます。",
            "ほとんどのパンは、よく温めたオーブンで約四十分焼きます。",
            "パンはビニール袋より布袋に入れたほうが長く新鮮さを保てます。",
        ],
        [
            "首都行きの急行列車は、三番線から毎時一本出発します。",
            "オンラインで買った切符は、駅で買うよりも安くなります。",
            "自転車を持ち込む乗客は、事前に専用スペースを予約する必要があります。",
            "一時間以上遅れた場合、乗客は運賃の一部払い戻しを請求できます。",
        ],
        [
            "パスワードを再設定するには、ログインページの「パスワードをお忘れの方」をクリックしてください。",
            "アカウントに登録されているメールアドレスに確認用のリンクをお送りします。",
            "リンクの有効期限は二十四時間で、一度しか使用できません。",
            "メールが届かない場合は、サポートに問い合わせる前に迷惑メールフォルダをご確認ください。",
        ],
        [
            "私たちの地域では、紙、ガラス、プラスチックを分けて回収しています。",
            "ガラス瓶はすすいでから色別に分けてください。",
            "電池や古い電子機器は、絶対に家庭ごみに出さないでください。",
            "公園の近くのリサイクルセンターでは、土曜日に粗大ごみを受け付けています。",
        ],
    ],
    "ko": [
        [
            "북반구에서 봄은 3월에 시작되며, 이때 낮이 눈에 띄게 길어집니다.",
            "4월에는 가랑비가 자주 내려서 작은 우산을 들고 다니는 사람이 많습니다.",
            "5월 말이 되면 유럽 대부분 지역의 기온이 20도를 넘습니다.",
            "텃밭을 가꾸는 사람들은 보통 마지막 서리가 지난 뒤에 토마토를 심습니다.",
        ],
        [
            "시립 도서관은 평일 오전 9시부터 오후 8시까지 문을 엽니다.",
            "회원은 한 번에 최대 열 권까지 3주 동안 빌릴 수 있습니다.",
            "연체된 자료도 다른 이용자가 예약하지 않았다면 온라인으로 연장할 수 있습니다.",
            "2층 열람실은 조용히 공부하는 공간입니다.",
        ],
        [
            "간단한 빵을 만드는 데는 밀가루, 물, 소금, 이스트만 있으면 됩니다.",
            "반죽은 따뜻한 곳에서 부피가 두 배가 될 때까지 발효시켜야 합니다.",
            "대부분의 빵은 뜨거운 오븐에서 약 40분 동안 굽습니다.",
            "빵은 비닐봉지보다 천 주머니에 보관하면 더 오래 신선합니다.",
        ],
        [
            "수도로 가는 급행열차는 3번 승강장에서 매시간 출발합니다.",
            "온라인으로 구매한 승차권이 역에서 산 것보다 저렴합니다.",
            "자전거를 가지고 타는 승객은 미리 별도의 자리를 예약해야 합니다.",
            "한 시간 이상 지연되면 승객은 요금의 일부를 환불받을 수 있습니다.",
        ],
        [
            "비밀번호를 재설정하려면 로그인 페이지에서 '비밀번호 찾기'를 클릭하세요.",
            "계정에 연결된 이메일 주소로 확인 링크를 보내 드립니다.",
            "링크는 24시간 동안 유효하며 한 번만 사용할 수 있습니다.",
            "이메일을 받지 못하셨다면 고객 지원팀에 문의하기 전에 스팸 메일함을 확인해 주세요.",
        ],
        [
            "우리 동네에서는 종이, 유리, 플라스틱을 따로 수거합니다.",
            "유리병은 헹군 뒤 색깔별로 분리해야 합니다.",
            "건전지와 오래된 전자 제품은 절대로 생활 쓰레기로 버리면 안 됩니다.",
            "공원 근처 재활용 센터는 토요일마다 대형 폐기물을 받습니다.",
        ],
    ],
    "tr": [
        [
            "Kuzey yarımkürede ilkbahar, günlerin belirgin şekilde uzadığı mart ayında başlar.",
            "Nisan ayında hafif yağmurlar sık görülür, bu yüzden birçok kişi yanında küçük bir şemsiye taşır.",
            "Mayıs sonuna doğru Avrupa'nın büyük bölümünde sıcaklık yirmi derecenin üzerine çıkar.",
            "Bahçeyle uğraşanlar genellikle domates dikmeden önce son donun geçmesini bekler.",
        ],
        [
            "Şehir kütüphanesi hafta içi sabah dokuzdan akşam sekize kadar açıktır.",
            "Üyeler aynı anda en fazla on kitabı üç haftalığına ödünç alabilir.",
            "Süresi geçmiş kitaplar, başka bir okuyucu ayırtmadıysa internet üzerinden uzatılabilir.",
            "İkinci kattaki okuma salonu sessiz çalışma için ayrılmıştır.",
        ],
        [
            "Sade bir ekmek için yalnızca un, su, tuz ve maya gerekir.",
            "Hamur, hacmi iki katına çıkana kadar ılık bir yerde dinlendirilmelidir.",
            "Ekmeklerin çoğu sıcak fırında yaklaşık kırk dakika pişer.",
            "Ekmek, plastik poşet yerine bez torbada saklanırsa daha uzun süre taze kalır.",
        ],
        [
            "Başkente giden ekspres tren her saat başı üç numaralı perondan kalkar.",
            "İnternetten alınan biletler istasyondan alınanlardan daha ucuzdur.",
            "Bisikletle seyahat eden yolcuların önceden ayrı bir yer ayırtması gerekir.",
            "Bir saatten fazla gecikme durumunda yolcular bilet ücretinin bir kısmının iadesini talep edebilir.",
        ],
        [
            'Şifrenizi sıfırlamak için giriş sayfasında "Şifremi unuttum" bağlantısına tıklayın.',
            "Hesabınıza bağlı e-posta adresine bir onay bağlantısı göndereceğiz.",
            "Bağlantı yirmi dört saat geçerlidir ve yalnızca bir kez kullanılabilir.",
            "E-posta gelmezse destek ekibiyle iletişime geçmeden önce lütfen istenmeyen posta klasörünüzü kontrol edin.",
        ],
        [
            "Mahallemizde kâğıt, cam ve plastik ayrı ayrı toplanır.",
            "Cam şişeler durulanmalı ve renklerine göre ayrılmalıdır.",
            "Piller ve eski elektronik cihazlar asla evsel atıklara atılmamalıdır.",
            "Parkın yakınındaki geri dönüşüm merkezi cumartesi günleri büyük eşyaları kabul eder.",
        ],
    ],
    "pl": [
        [
            "Na półkuli północnej wiosna zaczyna się w marcu, kiedy dni stają się wyraźnie dłuższe.",
            "W kwietniu często pada drobny deszcz, dlatego wiele osób nosi przy sobie małą parasolkę.",
            "Pod koniec maja temperatura w większości Europy przekracza dwadzieścia stopni.",
            "Działkowcy zwykle czekają, aż miną ostatnie przymrozki, zanim posadzą pomidory.",
        ],
        [
            "Biblioteka miejska jest czynna w dni powszednie od dziewiątej rano do ósmej wieczorem.",
            "Czytelnicy mogą wypożyczyć jednocześnie do dziesięciu książek na trzy tygodnie.",
            "Przetrzymane książki można prolongować przez internet, o ile nie zarezerwował ich inny czytelnik.",
            "Czytelnia na drugim piętrze jest przeznaczona do cichej nauki.",
        ],
        [
            "Do upieczenia prostego chleba potrzeba tylko mąki, wody, soli i drożdży.",
            "Ciasto powinno odpocząć w ciepłym miejscu, aż podwoi swoją objętość.",
            "Większość bochenków piecze się około czterdziestu minut w gorącym piekarniku.",
            "Chleb dłużej pozostaje świeży, gdy przechowuje się go w lnianym woreczku, a nie w foliowej torbie.",
        ],
        [
            "Pociąg ekspresowy do stolicy odjeżdża co godzinę z peronu trzeciego.",
            "Bilety kupione przez internet są tańsze niż te kupione na dworcu.",
            "Pasażerowie z rowerem muszą wcześniej zarezerwować dla niego osobne miejsce.",
            "W przypadku opóźnienia przekraczającego godzinę podróżni mogą ubiegać się o częściowy zwrot pieniędzy.",
        ],
        [
            "Aby zresetować hasło, kliknij „Nie pamiętam hasła” na stronie logowania.",
            "Wyślemy link potwierdzający na adres e-mail powiązany z Twoim kontem.",
            "Link jest ważny przez dwadzieścia cztery godziny i można go użyć tylko raz.",
            "Jeśli wiadomość nie dotrze, przed skontaktowaniem się z pomocą techniczną sprawdź folder ze spamem.",
        ],
        [
            "W naszej okolicy papier, szkło i plastik zbiera się osobno.",
            "Szklane butelki należy opłukać i posegregować według koloru.",
            "Baterii ani starej elektroniki nigdy nie wolno wyrzucać do odpadów domowych.",
            "Punkt selektywnej zbiórki odpadów przy parku przyjmuje w soboty odpady wielkogabarytowe.",
        ],
    ],
}

# Languages written without spaces between sentences.
NO_SPACE_JOIN = {"zh", "ja"}

SHARDS = ("part-0000.parquet", "part-0001.parquet", "part-0002.jsonl", "part-0003.jsonl.gz")
BAD_ROWS_SHARD = "part-0002.jsonl"


def _spans() -> list[tuple[int, int, int]]:
    """(topic, start, end) for every run of 1-4 consecutive sentences: 6 x 10."""
    return [(t, i, j) for t in range(len(TOPICS)) for i in range(4) for j in range(i + 1, 5)]


def build_rows() -> list[dict]:
    """Good rows in shuffled order, ids assigned; no bad rows."""
    for lang, topics in LANGS.items():
        assert len(topics) == len(TOPICS), lang
        assert all(len(t) == 4 for t in topics), lang
    docs = []
    for lang in LANGS:
        rng = random.Random(f"{SEED}:{lang}")
        spans = _spans()
        # every topic at least 3 times, then fill up at random
        chosen = []
        for t in range(len(TOPICS)):
            own = [s for s in spans if s[0] == t]
            chosen += rng.sample(own, 3)
        rest = [s for s in spans if s not in chosen]
        chosen += rng.sample(rest, DOCS_PER_LANG - len(chosen))
        sep = "" if lang in NO_SPACE_JOIN else " "
        for t, i, j in chosen:
            docs.append({"text": sep.join(LANGS[lang][t][i:j]), "lang": lang})
    random.Random(SEED).shuffle(docs)
    rows = [{"id": i + 1, "text": d["text"], "lang": d["lang"]} for i, d in enumerate(docs)]
    assert len({r["text"] for r in rows}) == len(rows), "duplicate documents"
    return rows


def bad_rows(next_id: int) -> list[dict]:
    """Rows a robust job must reject and count (see samples/README.md)."""
    return [
        {"id": next_id, "text": None, "lang": "en"},  # null text
        {"id": next_id + 1, "text": "", "lang": "de"},  # empty text
        # null id (the text itself is fine)
        {"id": None, "text": "This note has no identifier, so it cannot be stored or referenced.", "lang": "en"},
    ]


def split(rows: list[dict]) -> dict[str, list[dict]]:
    n = len(SHARDS)
    size = -(-len(rows) // n)
    parts = {name: rows[k * size : (k + 1) * size] for k, name in enumerate(SHARDS)}
    # bad rows go in the middle of their shard, not just at the end
    good = parts[BAD_ROWS_SHARD]
    bad = bad_rows(len(rows) + 1)
    mid = len(good) // 2
    parts[BAD_ROWS_SHARD] = good[:mid] + bad[:2] + good[mid : mid + 10] + bad[2:] + good[mid + 10 :]
    return parts


SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64()),
        pa.field("text", pa.string()),
        pa.field("lang", pa.string()),
    ]
)


def _jsonl_bytes(rows: list[dict]) -> bytes:
    return "".join(
        json.dumps({"id": r["id"], "text": r["text"], "lang": r["lang"]}, ensure_ascii=False) + "\n" for r in rows
    ).encode("utf-8")


def write(out_dir: Path) -> dict[str, list[dict]]:
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = split(build_rows())
    for name, rows in parts.items():
        path = out_dir / name
        if name.endswith(".parquet"):
            table = pa.Table.from_pylist(rows, schema=SCHEMA)
            pq.write_table(table, path, row_group_size=PARQUET_ROW_GROUP_SIZE, compression="snappy")
        elif name.endswith(".jsonl"):
            path.write_bytes(_jsonl_bytes(rows))
        elif name.endswith(".jsonl.gz"):
            buf = io.BytesIO()
            # filename="" and mtime=0: no name or timestamp in the gzip header
            with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as gz:
                gz.write(_jsonl_bytes(rows))
            path.write_bytes(buf.getvalue())
        else:  # pragma: no cover
            raise ValueError(name)
    return parts


def read_shard(path: Path) -> list[dict]:
    if path.name.endswith(".parquet"):
        return pq.read_table(path).to_pylist()
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def summary(parts: dict[str, list[dict]]) -> str:
    lines = []
    total = 0
    for name, rows in parts.items():
        bad = sum(1 for r in rows if r["id"] is None or not r["text"])
        lines.append(f"{name}: {len(rows)} rows ({len(rows) - bad} good, {bad} bad)")
        total += len(rows)
    langs: dict[str, int] = {}
    for rows in parts.values():
        for r in rows:
            if r["id"] is not None and r["text"]:
                langs[r["lang"]] = langs.get(r["lang"], 0) + 1
    lines.append(f"total: {total} rows, languages: {len(langs)} {sorted(langs.items())}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT_DIR)
    ap.add_argument("--check", action="store_true", help="compare --out with a fresh build")
    args = ap.parse_args(argv)
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = write(Path(tmp))
        ok = True
        for name, rows in fresh.items():
            path = args.out / name
            if not path.exists() or read_shard(path) != rows:
                print(f"MISMATCH: {path}", file=sys.stderr)
                ok = False
        print(summary(fresh))
        return 0 if ok else 1
    parts = write(args.out)
    print(summary(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
